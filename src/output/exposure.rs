//! What the configured outputs expose, checked once at `run` start (before the spool opens):
//! - a file output whose path is a symbolic link is refused ([`crate::file_trust`]): events are
//!   never written to wherever someone else points a link;
//! - a network output without TLS (`relp`/`tcp` without `[output.tls]`, and every `udp`) sends
//!   the audit trail in clear text, readable and forgeable by anyone on the path: each is named in
//!   a warning, which is all it gets, since a private network or a local relay may be intended.

use super::OutputConfig;

/// Output names (as `output_names` gives them, in order) of the network outputs without TLS.
pub fn plaintext(outputs: &[OutputConfig], names: &[String]) -> Vec<(String, &'static str, String)> {
    outputs
        .iter()
        .zip(names)
        .filter_map(|(o, name)| match o {
            OutputConfig::Relp(c) if c.tls.is_none() => Some((name.clone(), "relp", c.address.clone())),
            OutputConfig::Tcp(c) if c.tls.is_none() => Some((name.clone(), "tcp", c.address.clone())),
            OutputConfig::Udp(c) => Some((name.clone(), "udp", c.address.clone())),
            _ => None,
        })
        .collect()
}

/// Refuse symlinked file output paths; warn about each plaintext network output.
pub fn check(outputs: &[OutputConfig]) -> Result<(), String> {
    let names = super::output_names(outputs).map_err(|(name, m)| format!("[[output]] {name}: {m}"))?;
    for (o, name) in outputs.iter().zip(&names) {
        if let OutputConfig::File(f) = o {
            crate::file_trust::refuse_symlink(&f.path, "file output path")
                .map_err(|e| format!("[[output]] {name}: {e}"))?;
        }
    }
    for (name, kind, address) in plaintext(outputs, &names) {
        let fix = if kind == "udp" { "use relp or tcp with [output.tls]" } else { "add [output.tls]" };
        log::warn!(
            "[[output]] {name}: {kind} to {address} without TLS: events cross the network in clear text, \
             readable and alterable on the way ({fix})"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(toml_text: &str) -> Vec<OutputConfig> {
        crate::config::Config::parse(toml_text, std::path::Path::new("t.toml")).unwrap().output
    }

    #[test]
    fn network_outputs_without_tls_are_named() {
        let o = outputs(
            "[[output]]\ntype = \"relp\"\naddress = \"a:2514\"\n\
             [[output]]\ntype = \"relp\"\nname = \"safe\"\naddress = \"b:2514\"\n[output.tls]\nca_file = \"/ca.pem\"\n\
             [[output]]\ntype = \"udp\"\naddress = \"c:514\"\n\
             [[output]]\ntype = \"stdout\"\n",
        );
        let names = crate::output::output_names(&o).unwrap();
        let plain: Vec<_> = plaintext(&o, &names).into_iter().map(|(n, k, _)| format!("{n}/{k}")).collect();
        assert_eq!(plain, ["relp-0/relp", "udp-2/udp"]);
    }

    #[test]
    fn a_symlinked_file_output_is_refused() {
        let dir = std::env::temp_dir().join(format!("auditrelay-exposure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("events.jsonl");
        std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
        let o = outputs(&format!("[[output]]\ntype = \"file\"\npath = {:?}\n", link.display().to_string()));
        let e = check(&o).unwrap_err();
        assert!(e.contains("file-0") && e.contains("symbolic link (to /etc/shadow)"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
