//! RELP frames: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
//!
//! The parser is strict and incremental: [`Decoder::decode`] returns `Ok(None)` until a whole frame
//! is buffered, and an error as soon as the bytes seen cannot start a valid frame, so a confused
//! peer is noticed at once instead of after a buffer fills. Rules (as librelp enforces them):
//! TXNR is 1–9 digits (0 only for server hints such as `serverclose`); COMMAND is 1–32 ASCII
//! letters; DATALEN is 1–9 digits and counts DATA octets; with DATALEN 0 there is neither SP nor
//! DATA; the trailer is one LF. DATA may contain LF. A frame larger than the decoder's `max_data`
//! is an error, which bounds what a peer can make us buffer.

use std::fmt;

pub const MAX_TXNR: u32 = 999_999_999;
const MAX_DIGITS: usize = 9;
const MAX_COMMAND: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Open,
    Syslog,
    Rsp,
    Close,
    ServerClose,
    Other(String),
}

impl Command {
    fn parse(s: &str) -> Command {
        match s {
            "open" => Command::Open,
            "syslog" => Command::Syslog,
            "rsp" => Command::Rsp,
            "close" => Command::Close,
            "serverclose" => Command::ServerClose,
            other => Command::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Command::Open => "open",
            Command::Syslog => "syslog",
            Command::Rsp => "rsp",
            Command::Close => "close",
            Command::ServerClose => "serverclose",
            Command::Other(s) => s,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: Command,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame at byte {offset} of the stream: {what}")]
    Malformed { offset: u64, what: &'static str },
    #[error("frame txnr {txnr}: DATALEN {len} exceeds the limit {max}")]
    TooLarge { txnr: u32, len: usize, max: usize },
    #[error("frame txnr {txnr}: trailer is {found:#04x}, expected LF")]
    Trailer { txnr: u32, found: u8 },
}

/// Append the encoding of one frame to `out`.
pub fn encode(txnr: u32, command: &str, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(txnr).as_bytes());
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// [`encode`] with the data given in pieces (a syslog header and the event's body, without
/// first copying them together).
pub fn encode_parts(txnr: u32, command: &str, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(len + 32);
    out.extend_from_slice(itoa::Buffer::new().format(txnr).as_bytes());
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    if len > 0 {
        out.push(b' ');
        for p in parts {
            out.extend_from_slice(p);
        }
    }
    out.push(b'\n');
}

/// Incremental decoder over a growing byte buffer.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_data: usize,
    /// Stream offset of `buf[0]`, for error messages.
    consumed: u64,
}

enum Step<T> {
    Need,
    Got(T, usize),
}

impl Decoder {
    pub fn new(max_data: usize) -> Decoder {
        Decoder { buf: Vec::new(), max_data, consumed: 0 }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn malformed(&self, at: usize, what: &'static str) -> FrameError {
        FrameError::Malformed { offset: self.consumed + at as u64, what }
    }

    /// Digits from `at` up to a SP (or, when `lf_ok`, an LF); returns the value and the index of
    /// the terminator.
    fn number(&self, at: usize, lf_ok: bool, what: &'static str) -> Result<Step<u64>, FrameError> {
        let mut i = at;
        let mut n: u64 = 0;
        loop {
            let Some(&b) = self.buf.get(i) else {
                return Ok(Step::Need);
            };
            match b {
                b'0'..=b'9' => {
                    if i - at == MAX_DIGITS {
                        return Err(self.malformed(i, what));
                    }
                    n = n * 10 + u64::from(b - b'0');
                }
                b' ' if i > at => return Ok(Step::Got(n, i)),
                b'\n' if i > at && lf_ok => return Ok(Step::Got(n, i)),
                _ => return Err(self.malformed(i, what)),
            }
            i += 1;
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        let (txnr, sp1) = match self.number(0, false, "TXNR must be 1-9 digits followed by SP")? {
            Step::Need => return Ok(None),
            Step::Got(n, i) => (n, i),
        };
        // number() bounds TXNR to 9 digits, so it fits u32.
        let txnr = u32::try_from(txnr).map_err(|_| self.malformed(0, "TXNR out of range"))?;
        let cmd_start = sp1 + 1;
        let mut i = cmd_start;
        loop {
            let Some(&b) = self.buf.get(i) else {
                return Ok(None);
            };
            match b {
                b'a'..=b'z' | b'A'..=b'Z' if i - cmd_start < MAX_COMMAND => i += 1,
                b' ' if i > cmd_start => break,
                _ => return Err(self.malformed(i, "COMMAND must be 1-32 letters followed by SP")),
            }
        }
        let command = Command::parse(std::str::from_utf8(&self.buf[cmd_start..i]).unwrap_or_default());
        let (len, term) = match self.number(i + 1, true, "DATALEN must be 1-9 digits")? {
            Step::Need => return Ok(None),
            Step::Got(n, t) => (n, t),
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max_data {
            return Err(FrameError::TooLarge { txnr, len, max: self.max_data });
        }
        let (data_start, trailer_at) = match (self.buf[term], len) {
            (b'\n', 0) => (term, term),
            (b'\n', _) => return Err(self.malformed(term, "DATALEN > 0 but no DATA")),
            (_, 0) => return Err(self.malformed(term, "DATALEN 0 must be followed by LF")),
            _ => (term + 1, term + 1 + len),
        };
        let Some(&trailer) = self.buf.get(trailer_at) else {
            return Ok(None);
        };
        if trailer != b'\n' {
            return Err(FrameError::Trailer { txnr, found: trailer });
        }
        let data = self.buf[data_start..data_start + len].to_vec();
        let used = trailer_at + 1;
        self.buf.drain(..used);
        self.consumed += used as u64;
        Ok(Some(Frame { txnr, command, data }))
    }
}

/// A parsed `rsp` DATA: `CODE SP text [LF data]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub text: String,
    pub data: String,
}

impl Response {
    /// The code alone, without copying the text: the check made for every acknowledged event.
    /// Agrees with [`Response::parse`] on what is parsable.
    pub fn code(data: &[u8]) -> Option<u16> {
        if data.is_empty() {
            return Some(200);
        }
        let end = data.iter().position(|&b| b == b' ' || b == b'\n').unwrap_or(data.len());
        let code = &data[..end];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
    }

    /// `close` is answered with an empty rsp; that is represented as code 200 with no text.
    pub fn parse(data: &[u8]) -> Option<Response> {
        if data.is_empty() {
            return Some(Response { code: 200, text: String::new(), data: String::new() });
        }
        let s = String::from_utf8_lossy(data);
        let (first, rest) = s.split_once('\n').unwrap_or((&s, ""));
        let (code, text) = first.split_once(' ').unwrap_or((first, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Response { code: code.parse().ok()?, text: text.to_string(), data: rest.to_string() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut d = Decoder::new(1 << 20);
        d.extend(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode()? {
            out.push(f);
        }
        assert_eq!(d.pending(), 0, "left over bytes");
        Ok(out)
    }

    #[test]
    fn session_bytes_from_the_reference() {
        let s = b"1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n2 rsp 6 200 OK\n3 rsp 0\n0 serverclose 0\n";
        let frames = decode_all(s).unwrap();
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0].txnr, 1);
        let r = Response::parse(&frames[0].data).unwrap();
        assert_eq!((r.code, r.text.as_str()), (200, "OK"));
        assert!(r.data.contains("commands=syslog"));
        assert_eq!(frames[2], Frame { txnr: 3, command: Command::Rsp, data: vec![] });
        assert_eq!(frames[3].command, Command::ServerClose);
        assert_eq!(frames[3].txnr, 0);
    }

    #[test]
    fn encode_matches_reference() {
        let mut out = Vec::new();
        encode(1, "open", b"relp_version=0\nrelp_software=auditrelay,0.1\ncommands=syslog", &mut out);
        encode(3, "close", b"", &mut out);
        assert_eq!(
            out,
            b"1 open 59 relp_version=0\nrelp_software=auditrelay,0.1\ncommands=syslog\n3 close 0\n".to_vec()
        );
    }

    #[test]
    fn incomplete_frames_wait_for_more() {
        let whole = b"12 rsp 6 200 OK\n";
        for cut in 0..whole.len() {
            let mut d = Decoder::new(100);
            d.extend(&whole[..cut]);
            assert_eq!(d.decode(), Ok(None), "cut at {cut}");
            d.extend(&whole[cut..]);
            assert_eq!(d.decode().unwrap().unwrap().txnr, 12);
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: &[&[u8]] = &[
            b"1234567890 rsp 0\n",                      // 10-digit txnr
            b"x rsp 0\n",                               // txnr not digits
            b" 1 rsp 0\n",                              // leading space
            b"1 r5p 0\n",                               // command with digit
            b"1  rsp 0\n",                              // empty command
            b"1 rsp 0 \n",                              // SP after DATALEN 0
            b"1 rsp 2\nab\n",                           // DATALEN>0 without SP
            b"1 rsp 2 abX",                             // bad trailer
            b"1 rsp -1\n",                              // negative length
            b"1 rsp 1234567890 x",                      // 10-digit datalen
            b"1 abcdefghijklmnopqrstuvwxyzabcdefg 0\n", // 33-letter command
        ];
        for c in cases {
            assert!(decode_all(c).is_err(), "{:?} accepted", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn oversized_frame_rejected_before_buffering_data() {
        let mut d = Decoder::new(10);
        d.extend(b"5 rsp 11 ");
        assert_eq!(d.decode(), Err(FrameError::TooLarge { txnr: 5, len: 11, max: 10 }));
    }

    #[test]
    fn error_offsets_point_into_the_stream() {
        let mut d = Decoder::new(100);
        d.extend(b"1 rsp 0\n2 rsp 0\n3 r!p");
        assert!(d.decode().unwrap().is_some());
        assert!(d.decode().unwrap().is_some());
        assert_eq!(
            d.decode(),
            Err(FrameError::Malformed { offset: 19, what: "COMMAND must be 1-32 letters followed by SP" })
        );
    }

    #[test]
    fn response_parsing() {
        assert_eq!(Response::parse(b"500 command disabled").unwrap().code, 500);
        assert_eq!(Response::parse(b"200 OK").unwrap().text, "OK");
        assert!(Response::parse(b"OK").is_none());
        assert!(Response::parse(b"20 OK").is_none());
        for data in [&b"200 OK"[..], b"500 command disabled", b"OK", b"20 OK", b"", b"200\nx", b"2000 x", b"418"] {
            assert_eq!(Response::code(data), Response::parse(data).map(|r| r.code), "{data:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(txnr in 0u32..=MAX_TXNR, cmd in "[a-zA-Z]{1,32}", data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = Vec::new();
            encode(txnr, &cmd, &data, &mut bytes);
            let frames = decode_all(&bytes).unwrap();
            prop_assert_eq!(frames.len(), 1);
            prop_assert_eq!(frames[0].txnr, txnr);
            prop_assert_eq!(frames[0].command.as_str(), cmd.as_str());
            prop_assert_eq!(&frames[0].data, &data);
        }

        #[test]
        fn split_anywhere_same_frames(data in proptest::collection::vec(any::<u8>(), 0..100), cut in 0usize..200) {
            let mut bytes = Vec::new();
            encode(7, "syslog", &data, &mut bytes);
            encode(8, "syslog", &data, &mut bytes);
            let cut = cut.min(bytes.len());
            let mut d = Decoder::new(1000);
            d.extend(&bytes[..cut]);
            let mut got = Vec::new();
            while let Some(f) = d.decode().unwrap() { got.push(f); }
            d.extend(&bytes[cut..]);
            while let Some(f) = d.decode().unwrap() { got.push(f); }
            prop_assert_eq!(got.len(), 2);
            prop_assert_eq!(&got[1].data, &data);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = Decoder::new(64);
            d.extend(&bytes);
            for _ in 0..10 {
                match d.decode() { Ok(Some(_)) => {}, _ => break }
            }
        }
    }
}
