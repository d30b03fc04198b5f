//! The isolating tools the isolated lifecycle is compared with, measured in
//! the same run: bubblewrap (`bwrap`) and util-linux `unshare`, each
//! starting `/bin/true` in new namespaces.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::BoxError;

/// One tool's command line for a run of `/bin/true`.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Short name in the figures ("bwrap", "unshare").
    pub label: &'static str,
    /// The Debian package that ships it.
    pub package: &'static str,
    /// The program, as looked up in `PATH`.
    program: &'static str,
    /// Its arguments, `/bin/true` last.
    args: &'static [&'static str],
}

/// bubblewrap: every namespace it can unshare (user, ipc, pid, net with
/// loopback, uts, cgroup), a tmpfs root with `/usr` read-only and the
/// merged-/usr links, its own `/proc`, a minimal `/dev` and a private
/// `/tmp`; the nearest it offers to the sandbox runbox builds (runbox also
/// drops capabilities and loads a seccomp filter, and copies files in and
/// out).
pub const BWRAP: Tool = Tool {
    label: "bwrap",
    package: "bubblewrap",
    program: "bwrap",
    args: &[
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--",
        "/bin/true",
    ],
};

/// util-linux `unshare`: the same seven namespaces as runbox's sandbox
/// (user mapped to root, mount, pid with its own `/proc`, net, ipc, uts,
/// cgroup), but the host's filesystem: namespaces alone, no new root.
pub const UNSHARE: Tool = Tool {
    label: "unshare",
    package: "util-linux",
    program: "unshare",
    args: &[
        "--user",
        "--map-root-user",
        "--mount",
        "--pid",
        "--fork",
        "--net",
        "--ipc",
        "--uts",
        "--cgroup",
        "--mount-proc",
        "/bin/true",
    ],
};

impl Tool {
    /// The command line as the figures' notes show it.
    pub fn command_line(&self) -> String {
        format!("{} {}", self.program, self.args.join(" "))
    }

    /// Its arguments, `/bin/true` last.
    pub fn args(&self) -> &'static [&'static str] {
        self.args
    }

    /// The program in `PATH`, if it is installed.
    pub fn find(&self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|d| d.join(self.program))
            .find(|p| is_executable(p))
    }

    /// One run of `/bin/true` through the tool at `program`, timed, with
    /// the same small environment as the bare spawn. Its stderr is in the
    /// error when it fails (a tool that cannot isolate on this host).
    pub async fn run(&self, program: &Path) -> Result<Duration, BoxError> {
        let t = Instant::now();
        let out = tokio::process::Command::new(program)
            .args(self.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/")
            .env("LANG", "C.UTF-8")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await?;
        let took = t.elapsed();
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                self.command_line(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(took)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
