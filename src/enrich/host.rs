//! `host`: which machine an event came from, for outputs that merge many (files, Elasticsearch).
//!
//! The kernel's hostname (`/proc/sys/kernel/hostname`, the UTS name of the daemon's namespace) read
//! once at start, unless `[enrich] host` overrides it (a FQDN, or the name a fleet knows the
//! machine by). Read once because a hostname change mid-run should not split one machine's events
//! into two; a restart picks the new one up.

/// `configured`, else the kernel's hostname, else `None` (logged: events then carry no `host`).
pub fn resolve(configured: Option<&str>) -> Option<String> {
    if let Some(name) = configured {
        return Some(name.to_string());
    }
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) if !name.trim().is_empty() => Some(name.trim().to_string()),
        Ok(_) => {
            log::warn!("the kernel's hostname is empty; events carry no `host` (set [enrich] host)");
            None
        }
        Err(e) => {
            log::warn!("cannot read /proc/sys/kernel/hostname: {e}; events carry no `host` (set [enrich] host)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_wins_and_the_kernel_name_is_read() {
        assert_eq!(resolve(Some("web-1.example")).as_deref(), Some("web-1.example"));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(resolve(None).as_deref(), Some(kernel.trim()));
    }
}
