//! Mounts of the cluster: the mount points under `$DIR` (from
//! /proc/self/mountinfo) and their unmounting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{capture_to_end, command, Layout};

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Later lines were mounted later: reversed, a mount stacked on another
    // at the same point comes first.
    let mut found: Vec<PathBuf> = info
        .lines()
        .rev()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything under `$DIR` (the daemons' netns files, container
/// shm, the data-root bind mount dockerd makes for mount propagation),
/// deepest first, in rounds (one unmount can free another); the last round
/// detaches lazily whatever is still busy.
pub fn unmount_all(layout: &Layout, problems: &mut Vec<String>) {
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let mounts = mounts_under(&layout.dir);
        if mounts.is_empty() {
            return;
        }
        let lazy = round == ROUNDS - 1;
        for m in &mounts {
            let mut cmd = command("umount");
            if lazy {
                cmd.arg("-l");
            }
            let r = capture_to_end(cmd.arg(m), Duration::from_secs(10));
            if let (true, Err(e)) = (lazy, r) {
                problems.push(format!("unmounting {}: {e:#}", m.display()));
            }
        }
    }
}
