//! The seccomp filter every sandboxed command runs under: default allow, a
//! deny list of the calls that reach kernel surface a sandbox has no use for
//! (mounts, namespaces, keyrings, bpf, io_uring, ptrace, modules, clocks, ...),
//! errno on deny, and death for a system call of a foreign architecture.
//!
//! The program is built once, before any fork ([`Filter::build`]); applying
//! it ([`Filter::apply`]) is two system calls on prebuilt data, with no
//! allocation, so it may run in a `pre_exec` as well as in the sandbox init.
//!
//! Layout: a short hand-written prefix, then the program seccompiler compiles
//! from the deny list. The prefix carries what seccompiler's single
//! match-action cannot say: `clone3` answers ENOSYS (so glibc falls back to
//! `clone`, whose flags the filter can see, where clone3 passes them in
//! memory that seccomp cannot read), and on x86_64 a call numbered with the
//! x32 bit kills (those numbers would bypass every rule keyed on the x86_64
//! numbers where the kernel has the x32 ABI).

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// The calls the filter denies, for the documentation and the isolation
/// report: a bare name is denied whatever its arguments; a qualified one
/// only as said.
pub const DENIED: &[&str] = &[
    "mount",
    "umount2",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "process_madvise",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "quotactl",
    "quotactl_fd",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "adjtimex",
    "open_by_handle_at",
    "clone with any CLONE_NEW* flag",
    "clone3 (ENOSYS, so libc falls back to clone)",
    "socket with AF_VSOCK or AF_PACKET",
    "ioctl TIOCSTI or TIOCLINUX",
    "any call of a foreign architecture or ABI (kills the process)",
];

/// The calls denied whole, with their numbers, for the tests.
#[cfg(test)]
pub(super) const WHOLE: &[(&str, libc::c_long)] = native::WHOLE;

/// A compiled filter, ready to apply.
#[derive(Clone, Debug)]
pub(crate) struct Filter(BpfProgram);

impl Filter {
    /// Compiles the filter for the architecture runbox was built for, with
    /// EPERM on deny. Fails on an architecture the filter has no table for.
    pub(crate) fn build() -> Result<Filter, String> {
        Self::build_with(libc::EPERM)
    }

    /// [`Filter::build`] with another errno on deny; the tests pick one no
    /// kernel path returns to prove the answer comes from the filter.
    pub(super) fn build_with(deny_errno: i32) -> Result<Filter, String> {
        let native = native::ARCH.ok_or_else(|| {
            format!(
                "seccomp filter: no system call table for {}",
                std::env::consts::ARCH
            )
        })?;
        // c_long is i64 here, but i32 on 32-bit targets (the stub table).
        #[allow(clippy::useless_conversion)]
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = native::WHOLE
            .iter()
            .map(|&(_, nr)| (i64::from(nr), Vec::new()))
            .collect();
        for (nr, arg, values) in native::conditional() {
            #[allow(clippy::useless_conversion)]
            let chain = rules.entry(i64::from(nr)).or_default();
            for (op, value) in values {
                chain.push(rule(arg, op, value)?);
            }
        }
        // Errno 0 would make a denied call "succeed" without running it.
        let deny = u32::try_from(deny_errno)
            .ok()
            .filter(|e| (1..4096).contains(e))
            .ok_or_else(|| format!("seccomp filter: errno {deny_errno} out of range"))?;
        let compiled: BpfProgram = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(deny),
            native.target,
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| format!("seccomp filter: {e}"))?;
        let mut program = prefix(&native);
        program.extend(compiled);
        if program.len() > BPF_MAXINSNS {
            return Err(format!(
                "seccomp filter: {} instructions, the kernel takes {BPF_MAXINSNS}",
                program.len()
            ));
        }
        Ok(Filter(program))
    }

    /// Installs the filter on the calling thread (and so on everything it
    /// execs or forks from now on), setting no_new_privs first as an
    /// unprivileged filter requires. Allocation-free: async-signal-safe.
    pub(crate) fn apply(&self) -> io::Result<()> {
        let len = u16::try_from(self.0.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        rustix::thread::set_no_new_privs(true)?;
        let prog = libc::sock_fprog {
            len,
            // The kernel copies the program in and never writes through it.
            filter: self.0.as_ptr().cast_mut().cast::<libc::sock_filter>(),
        };
        // SAFETY: `prog` points at `len` initialised instructions that
        // outlive the call; seccomp(2) only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_uint,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

// seccompiler's instruction must be the kernel's, since apply hands it over.
const _: () = assert!(
    std::mem::size_of::<sock_filter>() == std::mem::size_of::<libc::sock_filter>()
        && std::mem::align_of::<sock_filter>() == std::mem::align_of::<libc::sock_filter>()
);

/// One condition on argument `arg`, all 32-bit wide: every argument the
/// filter inspects is an `int` or `unsigned int` to the kernel (socket's
/// domain, ioctl's request, whatever the libc prototype says) or has its
/// flags in the low half (clone's, which the kernel truncates to 32 bits).
/// A 64-bit comparison would let a caller set upper bits the kernel drops
/// and slip past the rule.
fn rule(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| format!("seccomp filter: {e}"))
}

/// What the filter needs to know of the architecture it runs on.
struct Native {
    target: TargetArch,
    /// `AUDIT_ARCH_*`, the value in `seccomp_data.arch` (linux/audit.h).
    audit: u32,
    /// Numbers at and above this one are another ABI (x86_64's x32).
    foreign_from: Option<u32>,
    /// clone3's number.
    clone3: u32,
}

// Classic BPF opcodes (linux/bpf_common.h): class | operation | source.
/// BPF_LD | BPF_W | BPF_ABS (0x00 | 0x00 | 0x20).
const BPF_LD_W_ABS: u16 = 0x20;
/// BPF_JMP | BPF_JEQ | BPF_K (0x05 | 0x10 | 0x00).
const BPF_JEQ_K: u16 = 0x15;
/// BPF_JMP | BPF_JGE | BPF_K (0x05 | 0x30 | 0x00).
const BPF_JGE_K: u16 = 0x35;
/// BPF_RET | BPF_K (0x06 | 0x00).
const BPF_RET_K: u16 = 0x06;
const BPF_MAXINSNS: usize = 4096;
/// Offsets in `struct seccomp_data` (linux/seccomp.h).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

const fn insn(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The hand-written head of the program: kill on a foreign architecture or
/// ABI, ENOSYS for clone3; anything else falls through to seccompiler's
/// program (which checks the architecture again, harmlessly).
fn prefix(native: &Native) -> BpfProgram {
    let kill = libc::SECCOMP_RET_KILL_PROCESS;
    let enosys = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA);
    let mut p = vec![
        insn(BPF_LD_W_ABS, DATA_ARCH, 0, 0),
        insn(BPF_JEQ_K, native.audit, 1, 0),
        insn(BPF_RET_K, kill, 0, 0),
        insn(BPF_LD_W_ABS, DATA_NR, 0, 0),
    ];
    if let Some(from) = native.foreign_from {
        p.push(insn(BPF_JGE_K, from, 0, 1));
        p.push(insn(BPF_RET_K, kill, 0, 0));
    }
    p.push(insn(BPF_JEQ_K, native.clone3, 0, 1));
    p.push(insn(BPF_RET_K, enosys, 0, 0));
    p
}

/// An argument condition: the operator and the value it compares with.
type Cond = (SeccompCmpOp, u64);

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod native {
    use super::{Cond, Native, SeccompCmpOp, TargetArch};

    #[cfg(target_arch = "x86_64")]
    pub(super) const ARCH: Option<Native> = Some(Native {
        target: TargetArch::x86_64,
        audit: 0xc000_003e,
        foreign_from: Some(0x4000_0000),
        clone3: libc::SYS_clone3 as u32,
    });
    #[cfg(target_arch = "aarch64")]
    pub(super) const ARCH: Option<Native> = Some(Native {
        target: TargetArch::aarch64,
        audit: 0xc000_00b7,
        foreign_from: None,
        clone3: libc::SYS_clone3 as u32,
    });

    /// Denied whatever their arguments; the names are [`super::DENIED`]'s.
    pub(super) const WHOLE: &[(&str, libc::c_long)] = &[
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("move_mount", libc::SYS_move_mount),
        ("open_tree", libc::SYS_open_tree),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("kcmp", libc::SYS_kcmp),
        ("process_madvise", libc::SYS_process_madvise),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("reboot", libc::SYS_reboot),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("syslog", libc::SYS_syslog),
        ("acct", libc::SYS_acct),
        ("quotactl", libc::SYS_quotactl),
        ("quotactl_fd", libc::SYS_quotactl_fd),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("settimeofday", libc::SYS_settimeofday),
        ("adjtimex", libc::SYS_adjtimex),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ];

    /// The namespace flags of clone(2). CLONE_NEWTIME is absent: in clone's
    /// flags its bit is part of the exit signal, and a time namespace can
    /// only be made by unshare or clone3, both denied whole.
    pub(super) const CLONE_NEW: &[libc::c_int] = &[
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ];

    /// Denied when one of the conditions holds: (number, argument index,
    /// conditions). clone's flags are argument 0 on both x86_64 and aarch64
    /// (they differ only in where the tls and child tid go).
    pub(super) fn conditional() -> Vec<(libc::c_long, u8, Vec<Cond>)> {
        // The flags and families are non-negative ints.
        let flag = |f: libc::c_int| {
            let bits = f as u32 as u64;
            (SeccompCmpOp::MaskedEq(bits), bits)
        };
        let eq = |v: u64| (SeccompCmpOp::Eq, v);
        vec![
            (
                libc::SYS_clone,
                0,
                CLONE_NEW.iter().map(|&f| flag(f)).collect(),
            ),
            (
                libc::SYS_socket,
                0,
                vec![eq(libc::AF_VSOCK as u64), eq(libc::AF_PACKET as u64)],
            ),
            (
                libc::SYS_ioctl,
                1,
                // The kernel reads the request as 32 bits (and so does the rule).
                vec![
                    eq(u64::from(libc::TIOCSTI as u32)),
                    eq(u64::from(libc::TIOCLINUX as u32)),
                ],
            ),
        ]
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod native {
    use super::{Cond, Native};

    pub(super) const ARCH: Option<Native> = None;
    pub(super) const WHOLE: &[(&str, libc::c_long)] = &[];
    pub(super) fn conditional() -> Vec<(libc::c_long, u8, Vec<Cond>)> {
        Vec::new()
    }
}
