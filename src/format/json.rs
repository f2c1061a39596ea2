//! Native JSON (docs/schema.md): one object per line per event or loss notice. Schema v1 is the
//! raw records; with an [`Enricher`] (schema v2) the interpretation's members follow them
//! (`interpretation.rs`), the records unchanged.
//!
//! Why hand-written: this is the hot path after parsing. The writer walks the record spans and
//! writes straight into one reused buffer; no intermediate `serde_json::Value`, no per-field
//! allocation. Invariants:
//! - every line is valid JSON (UTF-8, escaped) ending in `\n`, members in a fixed order;
//! - nothing is dropped: repeated keys become arrays at the key's first position, words without
//!   `=` go to `"_words"`, and a value that is not valid UTF-8 is written byte-for-character
//!   (Latin-1: byte 0xE9 → U+00E9) with its key listed in `"non_utf8"`, which makes it reversible;
//! - nothing is ambiguous: the kernel writes an untrusted string (EXECVE arguments, `comm`, `exe`,
//!   `name`, …) in quotes when it is plain and as bare hex otherwise, and JSON drops the quotes,
//!   so the keys whose value was hex-encoded are listed in `"hex"`: a literal argument `41` and
//!   the hex of `A` no longer look alike (found by the chaos suite's hostile argv case).

use crate::enrich::Enricher;
use crate::loss::LossNotice;
use crate::reassemble::{Event, Output};
use crate::record::{EventId, FieldRef, MessageType, Quoting, Record};

/// JSON key for tokens without `=` (e.g. `avc:  denied  { read } for` on AVC records).
pub const WORDS_KEY: &[u8] = b"_words";

/// Writes [`Output`]s as JSON lines into one reused buffer.
#[derive(Debug)]
pub struct JsonWriter {
    id_prefix: Option<String>,
    buf: Vec<u8>,
    /// Keys of non-UTF-8 values in the current fields object, as JSON strings joined by ','.
    non_utf8: Vec<u8>,
    /// Write each record's text as received in `"text"` (for outputs whose format needs it).
    record_text: bool,
    /// Schema v2's interpretation; `None` writes schema v1.
    enricher: Option<Enricher>,
    memo: interpretation::Memo,
    records: record_memo::RecordMemo,
    /// The enricher's generation after this writer's last interpretation (see
    /// `Enricher::interpret_repeat`).
    interpreted: Option<u64>,
    /// Keys of the current record whose value the kernel hex-encoded, the same way.
    hex: Vec<u8>,
    seconds: Seconds,
}

/// The last event's second, written both ways: thousands of events share it in a storm, and
/// formatting it (the date most of all) was a tenth of what the writer spent on a repeated
/// event (callgrind, openat storm: ~1 k instructions; docs/performance.md, thirteenth round).
#[derive(Debug, Default)]
struct Seconds {
    of: Option<u64>,
    /// `1795373270`
    unix: Vec<u8>,
    /// `2026-11-22T18:47:50`
    date: Vec<u8>,
}

impl Seconds {
    fn of(&mut self, seconds: u64) -> &Seconds {
        if self.of != Some(seconds) {
            self.of = Some(seconds);
            self.unix.clear();
            self.unix.extend_from_slice(itoa::Buffer::new().format(seconds).as_bytes());
            self.date.clear();
            push_rfc3339(&mut self.date, &EventId { seconds, millis: 0, serial: 0 });
            // Without the `.000Z` that follows the seconds.
            self.date.truncate(self.date.len().saturating_sub(5));
        }
        self
    }
}

/// `.780`: the milliseconds as [`push_padded`] writes them (three digits from the stamp).
fn push_millis(b: &mut Vec<u8>, millis: u16) {
    b.push(b'.');
    if millis < 1000 {
        b.extend_from_slice(&[
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
        ]);
    } else {
        push_padded(b, u64::from(millis), 3);
    }
}

impl JsonWriter {
    /// With `Some(prefix)`, each event starts with `"id":"<prefix>:<timestamp>:<serial>"`, a key
    /// unique across reboots when the prefix is the kernel boot id.
    pub fn new(id_prefix: Option<String>) -> JsonWriter {
        JsonWriter {
            id_prefix,
            buf: Vec::with_capacity(16 * 1024),
            non_utf8: Vec::with_capacity(64),
            record_text: false,
            enricher: None,
            memo: Default::default(),
            records: Default::default(),
            interpreted: None,
            hex: Vec::with_capacity(64),
            seconds: Seconds::default(),
        }
    }

    /// Also write each record's text after the `audit(…)` stamp (`": "` and the body), exactly as
    /// received, as `"text"`
    /// (Latin-1 with `"text_non_utf8":true` when not UTF-8): the go-audit and audit.log formats
    /// derive their record text from it byte for byte (see [`crate::format::OutputFormat`]).
    pub fn with_record_text(mut self, on: bool) -> JsonWriter {
        self.record_text = on;
        // The kept records' JSON was written with the other setting.
        self.records = Default::default();
        self
    }

    /// Write schema v2 (interpretation beside the records) with `enricher`, or v1 with `None`.
    pub fn with_enricher(mut self, enricher: Option<Enricher>) -> JsonWriter {
        self.enricher = enricher;
        // The memo's runs are the last enricher's.
        self.memo = interpretation::Memo::default();
        self.interpreted = None;
        self
    }

    /// The enricher, when writing schema v2.
    pub fn enricher(&mut self) -> Option<&mut Enricher> {
        self.enricher.as_mut()
    }

    /// [`JsonWriter::enricher`] to read (figures for status).
    pub fn enricher_ref(&self) -> Option<&Enricher> {
        self.enricher.as_ref()
    }

    /// One JSON line for `out`, including the trailing `\n`. Valid until the next call.
    pub fn write(&mut self, out: &Output) -> &[u8] {
        self.buf.clear();
        match out {
            Output::Event(event) => self.event(event),
            Output::Loss(notice) => self.loss(notice),
        }
        self.buf.push(b'\n');
        &self.buf
    }

    fn event(&mut self, event: &Event) {
        let b = &mut self.buf;
        let id = &event.id;
        let seconds = self.seconds.of(id.seconds);
        let mut serial = itoa::Buffer::new();
        let serial = serial.format(id.serial).as_bytes();
        b.push(b'{');
        if let Some(prefix) = &self.id_prefix {
            b.extend_from_slice(b"\"id\":\"");
            push_escaped(b, prefix.as_bytes(), false);
            b.push(b':');
            b.extend_from_slice(&seconds.unix);
            push_millis(b, id.millis);
            b.push(b':');
            b.extend_from_slice(serial);
            b.extend_from_slice(b"\",");
        }
        b.extend_from_slice(b"\"sequence\":");
        b.extend_from_slice(serial);
        b.extend_from_slice(b",\"timestamp\":\"");
        b.extend_from_slice(&seconds.unix);
        push_millis(b, id.millis);
        b.extend_from_slice(b"\",\"time\":\"");
        b.extend_from_slice(&seconds.date);
        push_millis(b, id.millis);
        b.extend_from_slice(b"Z\"");
        if let Some(node) = &event.node {
            b.extend_from_slice(b",\"node\":");
            let utf8 = std::str::from_utf8(node).is_ok();
            push_string(b, node, !utf8);
            if !utf8 {
                b.extend_from_slice(b",\"node_non_utf8\":true");
            }
        }
        b.extend_from_slice(b",\"records\":[");
        let mut repeats = self.records.last_count() == event.records.len();
        for (i, record) in event.records.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            if let Some(json) = self.records.get(i, record) {
                self.buf.extend_from_slice(json);
                continue;
            }
            repeats = false;
            let start = self.buf.len();
            self.record(record);
            self.records.store(i, record, &self.buf[start..]);
        }
        self.records.set_last_count(event.records.len());
        let b = &mut self.buf;
        b.push(b']');
        if event.incomplete {
            b.extend_from_slice(b",\"incomplete\":true");
        }
        if event.late {
            b.extend_from_slice(b",\"late\":true");
        }
        if let Some(enricher) = &mut self.enricher {
            let interpretation = match self.interpreted.filter(|_| repeats) {
                Some(generation) => enricher.interpret_repeat(event, generation),
                None => enricher.interpret(event),
            };
            interpretation::members(b, interpretation, &mut self.memo, repeats);
            self.interpreted = Some(enricher.generation());
        }
        b.push(b'}');
    }

    fn record(&mut self, record: &Record) {
        let b = &mut self.buf;
        if record.kind == MessageType::NONE && record.type_id().is_none() {
            unknown_type(b, record);
        } else {
            b.extend_from_slice(b"{\"type\":\"");
            match record.kind.known_name() {
                Some(name) => b.extend_from_slice(name.as_bytes()),
                None => {
                    b.extend_from_slice(b"UNKNOWN[");
                    b.extend_from_slice(itoa::Buffer::new().format(record.kind.0).as_bytes());
                    b.push(b']');
                }
            }
            b.extend_from_slice(b"\",\"type_id\":");
            b.extend_from_slice(itoa::Buffer::new().format(record.kind.0).as_bytes());
        }
        b.extend_from_slice(b",\"fields\":");
        self.hex.clear();
        self.fields(record.fields(), record.has_duplicate_keys(), Some(record.kind == MessageType::EXECVE));
        self.non_utf8_member(b"non_utf8");
        if !self.hex.is_empty() {
            self.buf.extend_from_slice(b",\"hex\":[");
            self.buf.extend_from_slice(&self.hex);
            self.buf.push(b']');
        }
        if record.interpreted().len() > 0 {
            self.buf.extend_from_slice(b",\"interpreted\":");
            self.fields(record.interpreted(), record.has_duplicate_keys(), None);
            self.non_utf8_member(b"interpreted_non_utf8");
        }
        if self.record_text {
            let body = record.after_stamp();
            let utf8 = is_utf8(body);
            self.buf.extend_from_slice(b",\"text\":");
            push_string(&mut self.buf, body, !utf8);
            if !utf8 {
                self.buf.extend_from_slice(b",\"text_non_utf8\":true");
            }
        }
        self.buf.push(b'}');
    }

    /// `,"<name>":[keys…]` when some value of the last fields object was not UTF-8.
    fn non_utf8_member(&mut self, name: &[u8]) {
        if self.non_utf8.is_empty() {
            return;
        }
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b"\":[");
        self.buf.extend_from_slice(&self.non_utf8);
        self.buf.push(b']');
    }

    /// `kernel`: Some(is EXECVE) for the kernel's own fields (whose hex-encoded strings are
    /// listed in `hex`), None for auditd's interpreted ones.
    fn fields<'a>(&mut self, fields: impl Iterator<Item = FieldRef<'a>>, duplicates: bool, kernel: Option<bool>) {
        self.non_utf8.clear();
        self.buf.push(b'{');
        let mut first = true;
        if !duplicates {
            for f in fields {
                if !first {
                    self.buf.push(b',');
                }
                first = false;
                if f.quoting == Quoting::Word {
                    self.group(WORDS_KEY, std::iter::once(f), true, None);
                } else if !self.plain_field(f, kernel) {
                    self.group(f.key, std::iter::once(f), false, kernel);
                }
            }
        } else {
            let all: Vec<FieldRef<'a>> = fields.collect();
            for (i, f) in all.iter().enumerate() {
                let key = json_key(f);
                if all[..i].iter().any(|g| json_key(g) == key) {
                    continue;
                }
                let same = all[i..].iter().copied().filter(|g| json_key(g) == key);
                let many = same.clone().count() > 1 || f.quoting == Quoting::Word;
                if !first {
                    self.buf.push(b',');
                }
                first = false;
                self.group(key, same, many, kernel);
            }
        }
        self.buf.push(b'}');
    }

    /// `"key":"value"` for a key and value that are printable ASCII needing no escape — nearly
    /// every field — in one check and one reserve; false (nothing written) otherwise, for
    /// [`Self::group`]. Half the JSON writer's instructions went to the general path's separate
    /// UTF-8, escape and hex passes over these short strings (callgrind, openat storm).
    #[inline]
    fn plain_field(&mut self, f: FieldRef<'_>, kernel: Option<bool>) -> bool {
        if !is_plain(f.key) || !is_plain(f.value) {
            return false;
        }
        if let Some(execve) = kernel {
            if f.quoting == Quoting::Bare && is_string_field(f.key, execve) && is_kernel_hex(f.value) {
                if !self.hex.is_empty() {
                    self.hex.push(b',');
                }
                self.hex.push(b'"');
                self.hex.extend_from_slice(f.key);
                self.hex.push(b'"');
            }
        }
        push_member(&mut self.buf, f.key, f.value);
        true
    }

    /// `"key":"value"`, or `"key":["v1","v2"]` when `array`. If any value is not UTF-8, all of
    /// the key's values are written as Latin-1 and the key is listed in `non_utf8`. A key whose
    /// value the kernel hex-encoded is listed in `hex` (for repeated keys: when every value is).
    fn group<'a>(
        &mut self,
        key: &[u8],
        values: impl Iterator<Item = FieldRef<'a>> + Clone,
        array: bool,
        kernel: Option<bool>,
    ) {
        if let Some(execve) = kernel {
            if is_string_field(key, execve)
                && values.clone().all(|f| f.quoting == Quoting::Bare && is_kernel_hex(f.value))
            {
                if !self.hex.is_empty() {
                    self.hex.push(b',');
                }
                push_string(&mut self.hex, key, !is_utf8(key));
            }
        }
        let latin1 = values.clone().any(|f| !is_utf8(f.value));
        let key_utf8 = is_utf8(key);
        push_string(&mut self.buf, key, !key_utf8);
        self.buf.push(b':');
        if array {
            self.buf.push(b'[');
        }
        for (i, f) in values.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            push_string(&mut self.buf, f.value, latin1);
        }
        if array {
            self.buf.push(b']');
        }
        if latin1 {
            if !self.non_utf8.is_empty() {
                self.non_utf8.push(b',');
            }
            push_string(&mut self.non_utf8, key, !key_utf8);
        }
    }

    fn loss(&mut self, notice: &LossNotice) {
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"loss\":{\"kind\":\"");
        b.extend_from_slice(notice.kind().as_bytes());
        b.push(b'"');
        for (name, value) in notice.members() {
            b.extend_from_slice(b",\"");
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(b"\":");
            b.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
        b.extend_from_slice(b"}}");
    }
}

/// `{"type":"NAME"` for a log line's type name this build does not know: as written, and no
/// `type_id`. Out of line: rare, and the common path stays small.
#[cold]
#[inline(never)]
fn unknown_type(b: &mut Vec<u8>, record: &Record) {
    b.extend_from_slice(b"{\"type\":\"");
    push_escaped(b, record.type_name().as_bytes(), false);
    b.push(b'"');
}

fn json_key<'a>(f: &FieldRef<'a>) -> &'a [u8] {
    if f.quoting == Quoting::Word {
        WORDS_KEY
    } else {
        f.key
    }
}

/// Fields the kernel writes with audit_log_untrustedstring (quoted when plain, bare hex when the
/// string holds a quote, a space, a control or a non-ASCII byte): EXECVE arguments (`a0`, `a1[2]`)
/// and, in any record, these names.
fn is_string_field(key: &[u8], execve: bool) -> bool {
    if execve {
        if let Some(rest) = key.strip_prefix(b"a") {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let tail = &rest[digits..];
            return digits > 0
                && (tail.is_empty()
                    || (tail.len() > 2
                        && tail[0] == b'['
                        && tail[tail.len() - 1] == b']'
                        && tail[1..tail.len() - 1].iter().all(u8::is_ascii_digit)));
        }
    }
    matches!(
        key,
        b"comm"
            | b"exe"
            | b"name"
            | b"cwd"
            | b"key"
            | b"proctitle"
            | b"ocomm"
            | b"path"
            | b"dir"
            | b"cmd"
            | b"root_dir"
    )
}

/// Bare uppercase hex of whole bytes, as the kernel's audit_log_n_hex writes it.
fn is_kernel_hex(v: &[u8]) -> bool {
    !v.is_empty() && v.len().is_multiple_of(2) && v.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
}

fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// `2026-11-22T18:47:50.780Z` (UTC, milliseconds).
pub(crate) fn push_rfc3339(b: &mut Vec<u8>, id: &EventId) {
    let days = (id.seconds / 86_400) as i64;
    let secs = id.seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    push_padded(b, year as u64, 4);
    b.push(b'-');
    push_padded(b, u64::from(month), 2);
    b.push(b'-');
    push_padded(b, u64::from(day), 2);
    b.push(b'T');
    push_padded(b, secs / 3600, 2);
    b.push(b':');
    push_padded(b, secs / 60 % 60, 2);
    b.push(b':');
    push_padded(b, secs % 60, 2);
    b.push(b'.');
    push_padded(b, u64::from(id.millis), 3);
    b.push(b'Z');
}

fn push_padded(b: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let s = digits.format(n).as_bytes();
    for _ in s.len()..width {
        b.push(b'0');
    }
    b.extend_from_slice(s);
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Bytes that need an escape inside a JSON string.
static ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Append `bytes` as a JSON string. With `latin1`, every byte ≥ 0x80 becomes U+0080..U+00FF;
/// otherwise `bytes` must be valid UTF-8 and passes through.
fn push_string(b: &mut Vec<u8>, bytes: &[u8], latin1: bool) {
    b.push(b'"');
    push_escaped(b, bytes, latin1);
    b.push(b'"');
}

/// [`push_string`] without the quotes.
#[inline]
fn push_escaped(b: &mut Vec<u8>, bytes: &[u8], latin1: bool) {
    // Nearly every audit value is short and needs no escape: one check, one copy. (The general
    // loop below cost ~140 instructions per value, most of them re-trying its word skip at every
    // byte of a value shorter than a word: callgrind, openat storm.)
    if !latin1 && !any_escape(bytes) {
        b.extend_from_slice(bytes);
        return;
    }
    push_escaped_slow(b, bytes, latin1);
}

/// Whether any byte of `bytes` needs an escape (UTF-8 passes through).
#[inline]
fn any_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        if needs_escape(u64::from_le_bytes(a)) {
            return true;
        }
    }
    words.remainder().iter().any(|&c| ESCAPE[c as usize])
}

/// `"key":"value"` for strings that need no escape.
#[inline(always)]
fn push_member(b: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let (k, v) = (key.len(), value.len());
    if k > SHORT || v > SHORT {
        b.reserve(k + v + 5);
        b.push(b'"');
        b.extend_from_slice(key);
        b.extend_from_slice(b"\":\"");
        b.extend_from_slice(value);
        b.push(b'"');
        return;
    }
    b.reserve(k + v + 5);
    let start = b.len();
    let spare = &mut b.spare_capacity_mut()[..k + v + 5];
    spare[0].write(b'"');
    copy_short(&mut spare[1..1 + k], key);
    for (d, &c) in spare[1 + k..4 + k].iter_mut().zip(b"\":\"") {
        d.write(c);
    }
    copy_short(&mut spare[4 + k..4 + k + v], value);
    spare[4 + k + v].write(b'"');
    // SAFETY: the `k + v + 5` bytes after `start` are within the reserved capacity (`spare` was cut
    // to that length, so a shorter one would have panicked above) and every one of them was
    // written: the quote, `key` (copy_short writes all of `dst`), the separator, `value`, the quote.
    unsafe { b.set_len(start + k + v + 5) };
}

/// Longest key or value [`copy_short`] copies; most audit keys and values are shorter.
const SHORT: usize = 16;

/// Copy `src` (at most [`SHORT`] bytes) into `dst` of the same length with at most two fixed-size
/// loads and stores, overlapping in the middle. Why not `copy_from_slice`: a call into libc's
/// memcpy per key and per value was 10 % of the JSON writer's instructions (callgrind, openat
/// storm: 71 calls per event, each a few bytes).
#[inline(always)]
fn copy_short(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8]) {
    let n = src.len();
    debug_assert!(n == dst.len() && n <= SHORT);
    fn put<const W: usize>(dst: &mut [std::mem::MaybeUninit<u8>], at: usize, word: [u8; W]) {
        for (d, c) in dst[at..at + W].iter_mut().zip(word) {
            d.write(c);
        }
    }
    match (src.first_chunk::<8>(), src.last_chunk::<8>(), src.first_chunk::<4>(), src.last_chunk::<4>()) {
        (Some(&lo), Some(&hi), _, _) => {
            put(dst, 0, lo);
            put(dst, n - 8, hi);
        }
        (None, None, Some(&lo), Some(&hi)) => {
            put(dst, 0, lo);
            put(dst, n - 4, hi);
        }
        _ => {
            for (d, &c) in dst.iter_mut().zip(src) {
                d.write(c);
            }
        }
    }
}

/// ASCII with nothing to escape: written as is, valid UTF-8. Sixteen bytes per step where SSE2 is
/// there (always on x86_64): EXECVE arguments and titles are long, and the word-at-a-time check
/// was most of writing them.
#[cfg(target_arch = "x86_64")]
#[inline]
fn is_plain(bytes: &[u8]) -> bool {
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 CPU has it (the target enables it).
    unsafe { plain_sse2(bytes) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn plain_sse2(bytes: &[u8]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
    };
    let bad = |v: __m128i| {
        // Signed: bytes ≥ 0x80 are negative, so "below space" also catches every non-ASCII byte.
        let control_or_high = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(control_or_high, _mm_or_si128(quote, backslash))) != 0
    };
    let pair = |lo: &[u8; 8], hi: &[u8; 8]| _mm_set_epi64x(i64::from_le_bytes(*hi), i64::from_le_bytes(*lo));
    let n = bytes.len();
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let (Some(lo), Some(hi)) = (block.first_chunk::<8>(), block.last_chunk::<8>()) else { return false };
        if bad(pair(lo, hi)) {
            return false;
        }
    }
    if blocks.remainder().is_empty() {
        return true;
    }
    // The tail without a loop per byte: overlapping loads cover it (a byte seen twice is the
    // same byte), the last sixteen bytes when there are that many.
    let tail = if n >= 16 { &bytes[n - 16..] } else { bytes };
    let m = tail.len();
    if let (Some(lo), Some(hi)) = (tail.first_chunk::<8>(), tail.last_chunk::<8>()) {
        return !bad(pair(lo, hi));
    }
    let word = match (tail.first_chunk::<4>(), tail.last_chunk::<4>()) {
        (Some(lo), Some(hi)) => u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << 32,
        // One to three bytes: first, middle, last, and again.
        _ => {
            let w = u64::from(tail[0]) | u64::from(tail[m / 2]) << 8 | u64::from(tail[m - 1]) << 16;
            w | w << 24 | w << 48
        }
    };
    !bad(_mm_set_epi64x(word as i64, word as i64))
}

#[cfg(not(target_arch = "x86_64"))]
fn is_plain(bytes: &[u8]) -> bool {
    is_plain_words(bytes)
}

/// [`is_plain`] eight bytes per step (SWAR over words, no per-byte branch): the portable check.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn is_plain_words(bytes: &[u8]) -> bool {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let w = u64::from_le_bytes(a);
        if w & HIGHS != 0 || needs_escape(w) {
            return false;
        }
    }
    words.remainder().iter().all(|&c| PLAIN[c as usize])
}

/// Bytes [`is_plain_words`] accepts: ASCII that needs no escape.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0x20;
    while i < 0x80 {
        table[i] = i != b'"' as usize && i != b'\\' as usize;
        i += 1;
    }
    table
};

#[cold]
fn push_escaped_slow(b: &mut Vec<u8>, bytes: &[u8], latin1: bool) {
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most values need no escape at all: skip clean 8-byte words without looking at each byte.
        if !latin1 {
            while let Some(word) = bytes.get(i..i + 8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                if needs_escape(u64::from_le_bytes(w)) {
                    break;
                }
                i += 8;
            }
            if i >= bytes.len() {
                break;
            }
        }
        let byte = bytes[i];
        let high = latin1 && byte >= 0x80;
        if !ESCAPE[byte as usize] && !high {
            i += 1;
            continue;
        }
        b.extend_from_slice(&bytes[run_start..i]);
        i += 1;
        run_start = i;
        if high {
            b.push(0xC0 | (byte >> 6));
            b.push(0x80 | (byte & 0x3F));
            continue;
        }
        match byte {
            b'"' => b.extend_from_slice(b"\\\""),
            b'\\' => b.extend_from_slice(b"\\\\"),
            b'\n' => b.extend_from_slice(b"\\n"),
            b'\r' => b.extend_from_slice(b"\\r"),
            b'\t' => b.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                b.extend_from_slice(b"\\u00");
                b.push(HEX[(byte >> 4) as usize]);
                b.push(HEX[(byte & 0xF) as usize]);
            }
        }
    }
    b.extend_from_slice(&bytes[run_start..]);
}

/// `bytes` (UTF-8) as a JSON string escaped the way serde_json writes it: as [`push_string`],
/// but backspace and form feed by name (`\b`, `\f`), which the native writer spells `\u0008`,
/// `\u000c`. For the ECS writer, whose documents were serde_json's before it wrote them directly.
pub(crate) fn push_serde_escaped(b: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    while let Some(at) = memchr::memchr2(0x08, 0x0c, rest) {
        push_escaped(b, &rest[..at], false);
        b.extend_from_slice(if rest[at] == 0x08 { b"\\b" } else { b"\\f" });
        rest = &rest[at + 1..];
    }
    push_escaped(b, rest, false);
}

/// Whether any byte of `w` is a control byte (< 0x20), `"` or `\` (SWAR: no per-byte branches).
#[inline]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    // Bytes < 0x20: subtracting 0x20 borrows into the high bit, excluding bytes that were ≥ 0x80.
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    below_space | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\'))) != 0
}

mod interpretation;
mod record_memo;

#[cfg(test)]
mod tests;
