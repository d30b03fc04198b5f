//! Who owns a workspace: the owning process's (pid, start time), whether it
//! still lives, and how that pair is spelled in a workspace's name.

/// A process identity that survives pid reuse: (pid, start time in clock
/// ticks since boot).
pub(crate) type Owner = (i32, u64);

/// This process.
pub(crate) fn current() -> Owner {
    let me = std::process::id() as i32;
    (me, start_time(me).unwrap_or(0))
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    crate::procfs::parse_stat(&stat).map(|s| s.start_time)
}

/// Is this pid alive (not a zombie) with this start time?
pub(crate) fn is_alive(pid: i32, start: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| crate::procfs::parse_stat(&s))
    {
        Some(s) => s.start_time == start && s.state != 'Z',
        None => false,
    }
}

/// The start of every workspace name `owner` makes: `ws-<pid>-<start>`
/// (hex); [`owner_of`] reads it back.
pub(crate) fn name_prefix(owner: Owner) -> String {
    let (pid, start) = owner;
    format!("ws-{pid:x}-{start:x}")
}

/// The owner a workspace id names (`<name_prefix>-<unique part>`); `None`
/// for a name not made that way.
pub(crate) fn owner_of(id: &str) -> Option<Owner> {
    let mut it = id.strip_prefix("ws-")?.split('-');
    let pid = i32::from_str_radix(it.next()?, 16).ok()?;
    let start = u64::from_str_radix(it.next()?, 16).ok()?;
    it.next()?;
    it.next().is_none().then_some((pid, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
    }
}
