//! Who owns a container: this process's pid, its start time (so a reused
//! pid is not mistaken for the owner), the boot id and the host name. Used
//! by `reap_orphans` to tell live owners from dead ones.

/// The identity of an owning process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22);
    /// empty where unknown.
    pub start: String,
    pub boot: String,
    pub host: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`, parsed after the command name (which may
/// contain spaces and parentheses).
pub(crate) fn start_time_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19).map(str::to_string)
}

impl Owner {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: start_time_of(pid).unwrap_or_default(),
            boot: read_trim("/proc/sys/kernel/random/boot_id"),
            host: read_trim("/proc/sys/kernel/hostname"),
        }
    }

    /// Whether the process described by these label values is still alive,
    /// seen from this process. `None`: cannot tell (another machine).
    pub fn is_alive(&self, pid: Option<u32>, start: &str, boot: &str, host: &str) -> Option<bool> {
        let pid = pid?;
        if !host.is_empty() && !self.host.is_empty() && host != self.host {
            return None;
        }
        if !boot.is_empty() && !self.boot.is_empty() && boot != self.boot {
            // Same machine, another boot: that process is gone.
            return Some(false);
        }
        match start_time_of(pid) {
            None => Some(false),
            Some(s) => Some(start.is_empty() || s == start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive() {
        let me = Owner::current();
        assert!(!me.start.is_empty());
        assert_eq!(
            me.is_alive(Some(me.pid), &me.start, &me.boot, &me.host),
            Some(true)
        );
        // Same pid, other start time: a reused pid, not the owner.
        assert_eq!(
            me.is_alive(Some(me.pid), "1", &me.boot, &me.host),
            Some(false)
        );
        // Another boot of this machine.
        assert_eq!(
            me.is_alive(Some(me.pid), &me.start, "other-boot", &me.host),
            Some(false)
        );
        // Another machine: unknown.
        assert_eq!(me.is_alive(Some(1), "", "", "some-other-host-xyz"), None);
        assert_eq!(me.is_alive(None, "", "", ""), None);
    }
}
