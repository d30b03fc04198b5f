//! Dropping every privilege a sandboxed command could hold or regain: the
//! capability sets (bounding and ambient too), the securebits that would
//! hand capabilities back to a uid 0 or across an exec, and no_new_privs.
//!
//! The sandbox init runs it once, after its user, groups and mounts are set
//! (those need the capabilities dropped here) and before it serves: every
//! command it forks inherits the result. Allocation-free: every step is a
//! raw system call through rustix, so it could also run between fork and
//! exec.

use std::io;

use rustix::io::Errno;
use rustix::thread::{self, CapabilitiesSecureBits as Bits, CapabilitySet, CapabilitySets};

/// Drops every privilege of the calling thread, irreversibly: securebits
/// locked (no root magic at exec, no capability fixup on uid changes, no
/// kept capabilities, no ambient raise), every capability out of the
/// bounding set, the ambient set cleared, no_new_privs set, then the
/// effective, permitted and inheritable sets emptied.
///
/// Securebits and the bounding set need CAP_SETPCAP (in the thread's user
/// namespace), so they come before the capset that gives it up. Fails with
/// EPERM without that capability; on error the thread is left part-way
/// and must not go on to run the command.
pub(crate) fn drop_all() -> io::Result<()> {
    lock_securebits()?;
    empty_bounding_set()?;
    // EINVAL: a kernel without ambient capabilities, so none to clear.
    match thread::clear_ambient_capability_set() {
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    thread::set_no_new_privs(true)?;
    let none = CapabilitySet::empty();
    thread::set_capabilities(
        None,
        CapabilitySets {
            effective: none,
            permitted: none,
            inheritable: none,
        },
    )?;
    Ok(())
}

/// Sets and locks the securebits that keep a uid 0 (the sandbox's root, in
/// its user namespace) from getting capabilities back, keeping any other
/// bit already set (a lock already held cannot be undone anyway).
fn lock_securebits() -> io::Result<()> {
    let lock = Bits::NO_ROOT
        | Bits::NO_ROOT_LOCKED
        | Bits::NO_SETUID_FIXUP
        | Bits::NO_SETUID_FIXUP_LOCKED
        | Bits::KEEP_CAPS_LOCKED
        | Bits::NO_CAP_AMBIENT_RAISE
        | Bits::NO_CAP_AMBIENT_RAISE_LOCKED;
    let bits = (thread::capabilities_secure_bits()? | lock) - Bits::KEEP_CAPS;
    thread::set_capabilities_secure_bits(bits)?;
    Ok(())
}

/// Drops capabilities 0, 1, ... from the bounding set until the kernel
/// answers EINVAL for the first number past its last capability: this
/// covers capabilities newer than rustix names, with no /proc read.
fn empty_bounding_set() -> io::Result<()> {
    for cap in 0..u64::BITS {
        match thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap))
        {
            Ok(()) => {}
            Err(Errno::INVAL) if cap > 0 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
