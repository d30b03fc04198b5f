//! `cargo xtask vm-test`: the native conformance suite on cgroup v2.
//!
//! Our machines run hybrid cgroups, so the cgroup v2 path is exercised in a
//! VM: Debian's kernel boots under `qemu-system-x86_64 -accel tcg` with an
//! initramfs built here (static busybox and its applet links, the native
//! conformance test binary and the shared libraries it needs, an `/init`
//! script). `/init` mounts cgroup2 at /sys/fs/cgroup with memory, pids and
//! cpu enabled, runs the whole suite with `RUNBOX_EXPECT_CGROUP=v2` (every
//! case's factory then refuses anything but cgroup v2), checks that no
//! workspace cgroup is left behind, prints result markers and powers off.
//!
//! Options:
//! - `--timeout SECS`   overall limit for the VM run (default 1200)
//! - `--threads N`      `--test-threads` of the suite (default 2)
//! - `--scale N`        `RUNBOX_TEST_TIME_SCALE` in the guest (default 8)
//! - `--case-deadline SECS` one case's deadline before scaling (default 60;
//!   scaled it stays under the VM timeout, so a stuck case is named and the
//!   guest's processes listed instead of the VM being cut off)
//! - `--memory MIB`     guest memory (default 2048)
//! - `--smp N`          guest vCPUs (default 2)
//! - `--kernel PATH`    kernel image (default: newest /boot/vmlinuz-*)
//! - `-- ARGS...`       passed to the test binary (e.g. a name filter)
//!
//! The archive and the guest console log are kept under `target/vm-test/`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

const RESULT_MARKER: &str = "RUNBOX-VM-RESULT:";
const CONTROLLERS_MARKER: &str = "RUNBOX-VM-CONTROLLERS:";
const SUBTREE_MARKER: &str = "RUNBOX-VM-SUBTREE:";
const KILL_MARKER: &str = "RUNBOX-VM-CGROUP-KILL:";
const LEFTOVER_MARKER: &str = "RUNBOX-VM-LEFTOVER-CGROUPS:";
const START_MARKER: &str = "RUNBOX-VM-SUITE-START:";
const END_MARKER: &str = "RUNBOX-VM-SUITE-END:";
const CALIBRATION_MARKER: &str = "RUNBOX-VM-CALIBRATION:";
/// The second pass: the suite again with host processes (isolation none),
/// whose cgroup v2 path clones each command into its cgroup.
const HOST_PASS_MARKER: &str = "RUNBOX-VM-HOST-PASS-START:";
const HOST_RESULT_MARKER: &str = "RUNBOX-VM-HOST-RESULT:";
const GUEST_BINARY: &str = "runbox/conformance";
/// A CPU-bound shell loop timed in the guest and on the host (with the same
/// busybox) to measure how much slower the guest runs code.
const CALIBRATION_LOOP: &str = "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done";

struct Options {
    timeout: Duration,
    threads: u32,
    scale: u32,
    case_deadline: u32,
    memory_mib: u32,
    smp: u32,
    kernel: Option<PathBuf>,
    test_args: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options {
        timeout: Duration::from_secs(1200),
        threads: 2,
        scale: 8,
        case_deadline: 60,
        memory_mib: 2048,
        smp: 2,
        kernel: None,
        test_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| -> Result<u32> {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{name} wants a positive number, not {v:?}"))
        };
        match a.as_str() {
            "--timeout" => {
                let v = value(a)?;
                o.timeout = Duration::from_secs(number(a, v)?.into());
            }
            "--threads" => o.threads = number(a, value(a)?)?,
            "--scale" => o.scale = number(a, value(a)?)?,
            "--case-deadline" => o.case_deadline = number(a, value(a)?)?,
            "--memory" => o.memory_mib = number(a, value(a)?)?,
            "--smp" => o.smp = number(a, value(a)?)?,
            "--kernel" => o.kernel = Some(PathBuf::from(value(a)?)),
            "--" => {
                o.test_args = it.by_ref().cloned().collect();
            }
            other => bail!(
                "vm-test: unknown argument {other:?}; usage: cargo xtask vm-test \
                 [--timeout SECS] [--threads N] [--scale N] [--case-deadline SECS] \
                 [--memory MIB] [--smp N] \
                 [--kernel PATH] [-- TEST-ARGS...]"
            ),
        }
    }
    for a in &o.test_args {
        ensure!(
            !a.contains('\'') && !a.contains('\n'),
            "test argument {a:?} cannot be quoted for /init"
        );
    }
    Ok(o)
}

pub fn vm_test(args: &[String]) -> Result<()> {
    let started = Instant::now();
    let opts = parse_args(args)?;
    let tools = ensure_packages()?;
    let kernel = match &opts.kernel {
        Some(k) => k.clone(),
        None => newest_kernel()?.context("no /boot/vmlinuz-* found")?,
    };
    std::fs::File::open(&kernel).with_context(|| {
        format!(
            "cannot read the kernel {} (Debian installs it readable by root only)",
            kernel.display()
        )
    })?;

    let test_bin = build_native_test("conformance")?;
    let root = workspace_root()?;
    let work = root.join("target").join("vm-test");
    std::fs::create_dir_all(&work).with_context(|| format!("mkdir {}", work.display()))?;
    let initrd = work.join("initramfs.cpio");
    let build_started = Instant::now();
    build_initramfs(&initrd, &tools.busybox, &test_bin, &work, &opts)?;
    eprintln!(
        "xtask: vm-test: initramfs {} ({} MiB) built in {:.1}s",
        initrd.display(),
        std::fs::metadata(&initrd)?.len() >> 20,
        build_started.elapsed().as_secs_f64()
    );

    let host_calibration = calibrate_host(&tools.busybox);
    let log_path = work.join("console.log");
    let mut run = boot(&tools.qemu, &kernel, &initrd, &log_path, &opts)?;
    if let Some(report) = &run.lockup {
        // A guest kernel that locks up never recovers. This happened in 2
        // of about 190 runs of this lane, both times right after
        // `invalid_limits_rejected` while the limit cases were starting,
        // with every case before it passed; the kernel's report (and, at
        // loglevel 5, its stack trace) is in the saved log. Boot once
        // more; a second lockup fails the lane.
        let saved = work.join("console-lockup.log");
        let _ = std::fs::copy(&log_path, &saved);
        eprintln!(
            "xtask: vm-test: the guest kernel locked up ({report}); console saved to {}; \
             booting the VM once more",
            saved.display()
        );
        run = boot(&tools.qemu, &kernel, &initrd, &log_path, &opts)?;
        if let Some(again) = &run.lockup {
            bail!(
                "vm-test: the guest kernel locked up twice ({again}); console logs {} and {}",
                saved.display(),
                log_path.display()
            );
        }
    }
    let summary = check(&run, &opts, host_calibration)?;
    eprintln!(
        "xtask: vm-test: PASSED on cgroup v2 (controllers: {}): {} passed, {} failed, \
         {} ignored; guest boot {}, suite {}, VM run {:.1}s, total {:.1}s, guest slowdown {}; \
         console log {}",
        summary.controllers,
        summary.passed,
        summary.failed,
        summary.ignored,
        summary
            .boot_secs
            .map_or("?".to_string(), |s| format!("{s:.1}s")),
        summary
            .suite_secs
            .map_or("?".to_string(), |s| format!("{s:.1}s")),
        run.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        summary
            .slowdown
            .map_or("?".to_string(), |f| format!("{f:.1}x")),
        log_path.display()
    );
    Ok(())
}

// ---------------------------------------------------------------- packages

struct Tools {
    qemu: PathBuf,
    busybox: PathBuf,
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // The effective uid is the second field of `Uid:` in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn newest_kernel() -> Result<Option<PathBuf>> {
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for e in std::fs::read_dir("/boot").context("read /boot")? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ver) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        // Debian's own kernels ("-amd64") first, then the highest version:
        // the numbers in "6.1.0-56-amd64" → [1, 6, 1, 0, 56].
        let debian = u64::from(ver.ends_with("-amd64"));
        let key: Vec<u64> = std::iter::once(debian)
            .chain(
                ver.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok()),
            )
            .collect();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, e.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

fn ensure_packages() -> Result<Tools> {
    let have = |qemu: &Option<PathBuf>, busybox: &Path| -> Result<Vec<&'static str>> {
        let mut missing = Vec::new();
        if qemu.is_none() {
            missing.push("qemu-system-x86");
        }
        if newest_kernel()?.is_none() {
            missing.push("linux-image-amd64");
        }
        if !busybox.is_file() {
            missing.push("busybox-static");
        }
        Ok(missing)
    };
    let busybox = PathBuf::from("/bin/busybox");
    let mut qemu = find_in_path("qemu-system-x86_64");
    let missing = have(&qemu, &busybox)?;
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "vm-test needs the Debian packages {} (missing); as root run: \
                 apt-get update && apt-get install -y --no-install-recommends {}",
                missing.join(", "),
                missing.join(" ")
            );
        }
        eprintln!("xtask: vm-test: installing {}", missing.join(" "));
        crate::run(Command::new("apt-get").arg("update"))?;
        crate::run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        qemu = find_in_path("qemu-system-x86_64");
        let still = have(&qemu, &busybox)?;
        ensure!(
            still.is_empty(),
            "still missing after apt-get install: {}",
            still.join(", ")
        );
    }
    Ok(Tools {
        qemu: qemu.expect("checked above"),
        busybox,
    })
}

/// Seconds the calibration loop takes on the host.
fn calibrate_host(busybox: &Path) -> Option<f64> {
    let t = Instant::now();
    let ok = Command::new(busybox)
        .args(["sh", "-c", CALIBRATION_LOOP])
        .status()
        .ok()?
        .success();
    ok.then(|| t.elapsed().as_secs_f64())
}

// ------------------------------------------------------------ test binary

fn workspace_root() -> Result<PathBuf> {
    // xtask lives in <root>/xtask.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}

/// The value of `"key":"..."` in a line of cargo's JSON, unescaped.
fn json_string(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                c @ ('"' | '\\' | '/') => out.push(c),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// Builds a test target of orchestrator-native (`cargo test --no-run`) and
/// returns its executable, read from cargo's JSON messages.
pub(crate) fn build_native_test(name: &str) -> Result<PathBuf> {
    let mut cmd = crate::cargo();
    cmd.args([
        "test",
        "-p",
        "orchestrator-native",
        "--test",
        name,
        "--no-run",
        "--message-format=json",
    ])
    .stdout(Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let out = cmd.output().context("cannot run cargo")?;
    ensure!(
        out.status.success(),
        "building the native test {name} failed: {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exe = stdout
        .lines()
        .filter(|l| {
            l.contains("\"reason\":\"compiler-artifact\"")
                && l.contains("\"kind\":[\"test\"]")
                && json_string(l, "name").as_deref() == Some(name)
        })
        .find_map(|l| json_string(l, "executable"))
        .with_context(|| format!("cargo did not report the {name} test executable"))?;
    Ok(PathBuf::from(exe))
}

// -------------------------------------------------------------- initramfs

/// A writer of "newc" cpio archives (what the kernel unpacks as initramfs).
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: u64,
    dirs: BTreeSet<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            ino: 1,
            written: 0,
            dirs: BTreeSet::new(),
        }
    }

    fn pad(&mut self) -> Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..n])?;
        self.written += n as u64;
        Ok(())
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        let name = name.trim_start_matches('/');
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len(),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() + 1,
            0, // check
        );
        self.ino += 1;
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += (header.len() + name.len() + 1) as u64;
        self.pad()?;
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        self.pad()
    }

    /// A directory and its missing parents.
    fn dir(&mut self, path: &str) -> Result<()> {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.dirs.insert(path.to_string());
        self.entry(path, S_IFDIR | 0o755, (0, 0), &[])
    }

    fn parent_of(&mut self, path: &str) -> Result<()> {
        if let Some((parent, _)) = path.trim_matches('/').rsplit_once('/') {
            self.dir(parent)?;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.parent_of(path)?;
        self.entry(path, S_IFREG | perm, (0, 0), data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.parent_of(path)?;
        self.entry(path, S_IFLNK | 0o777, (0, 0), target.as_bytes())
    }

    fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.parent_of(path)?;
        self.entry(path, S_IFCHR | perm, (major, minor), &[])
    }

    fn finish(mut self) -> Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        // The kernel reads the archive in 512-byte blocks; pad like cpio(1).
        let n = (512 - (self.written % 512) as usize) % 512;
        self.out.write_all(&vec![0u8; n])?;
        Ok(self.out)
    }
}

/// The shared libraries (and the dynamic loader) `ldd` lists for a binary.
/// A static binary has none.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", bin.display(), out.status);
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("ldd {}: {line}", bin.display());
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// A stripped copy of the test binary (debug info makes it ~10× larger,
/// and the guest unpacks the archive slowly); the original when no `strip`.
fn stripped(bin: &Path, work: &Path) -> Result<PathBuf> {
    let copy = work.join("conformance");
    std::fs::copy(bin, &copy).with_context(|| format!("copy {}", bin.display()))?;
    match Command::new("strip")
        .arg("--strip-debug")
        .arg(&copy)
        .status()
    {
        Ok(s) if s.success() => Ok(copy),
        _ => {
            eprintln!("xtask: vm-test: strip unavailable; using the unstripped binary");
            Ok(bin.to_path_buf())
        }
    }
}

fn init_script(opts: &Options) -> String {
    let mut test_args = format!("--color=never --test-threads={}", opts.threads);
    for a in &opts.test_args {
        test_args.push_str(&format!(" '{a}'"));
    }
    format!(
        r#"#!/bin/sh
# /init of the runbox cgroup v2 VM (generated by cargo xtask vm-test).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The initramfs is the kernel's rootfs, which pivot_root cannot leave (it
# has no parent mount): the native sandbox pivots into its own root, so the
# suite runs from a tmpfs copy, entered with switch_root (which frees the
# initramfs as it goes).
if [ "$1" != stage2 ]; then
  mount -t tmpfs -o mode=0755 tmpfs /newroot
  for d in bin sbin usr lib lib64 etc root runbox init; do
    [ -e "/$d" ] && cp -a "/$d" /newroot/
  done
  mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
  exec switch_root /newroot /init stage2
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "{CONTROLLERS_MARKER} $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
echo "{SUBTREE_MARKER} $(cat /sys/fs/cgroup/cgroup.subtree_control)"
mkdir /sys/fs/cgroup/vm-probe
if [ -e /sys/fs/cgroup/vm-probe/cgroup.kill ]; then kill=yes; else kill=no; fi
rmdir /sys/fs/cgroup/vm-probe
echo "{KILL_MARKER} $kill"
echo "RUNBOX-VM-GUEST: kernel $(uname -r), $(nproc) cpus, $(grep MemTotal /proc/meminfo)"
t0=$(cut -d' ' -f1 /proc/uptime)
{CALIBRATION_LOOP}
t1=$(cut -d' ' -f1 /proc/uptime)
echo "{CALIBRATION_MARKER} $t0 $t1"
export HOME=/root TMPDIR=/tmp
export RUNBOX_TEST_TIME_SCALE={scale} RUST_BACKTRACE=0 RUNBOX_EXPECT_CGROUP=v2
export RUNBOX_TEST_CASE_DEADLINE_SECS={case_deadline}
cd /tmp
echo "{START_MARKER} $(cut -d' ' -f1 /proc/uptime)"
/{GUEST_BINARY} {test_args}
code=$?
echo "{END_MARKER} $(cut -d' ' -f1 /proc/uptime)"
echo "{HOST_PASS_MARKER}"
RUNBOX_NATIVE_ISOLATION=none /{GUEST_BINARY} {test_args}
echo "{HOST_RESULT_MARKER} $?"
left=0
if [ -d /sys/fs/cgroup/runbox ]; then
  left=$(find /sys/fs/cgroup/runbox -mindepth 1 -type d | wc -l)
  find /sys/fs/cgroup/runbox -mindepth 1 -type d
fi
echo "{LEFTOVER_MARKER} $left"
echo "{RESULT_MARKER} $code"
sync
poweroff -f
"#,
        scale = opts.scale,
        case_deadline = opts.case_deadline,
    )
}

fn build_initramfs(
    out: &Path,
    busybox: &Path,
    test_bin: &Path,
    work: &Path,
    opts: &Options,
) -> Result<()> {
    let file = File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut cpio = Cpio::new(BufWriter::new(file));
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "lib", "lib64", "proc", "sys", "dev", "tmp", "etc",
        "root", "run", "runbox", "newroot",
    ] {
        cpio.dir(d)?;
    }
    // The kernel opens /dev/console for /init before devtmpfs is mounted.
    cpio.char_dev("dev/console", 0o600, 5, 1)?;
    cpio.char_dev("dev/null", 0o666, 1, 3)?;
    cpio.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    cpio.file("etc/group", 0o644, b"root:x:0:\n")?;

    let bb = std::fs::read(busybox).with_context(|| format!("read {}", busybox.display()))?;
    cpio.file("bin/busybox", 0o755, &bb)?;
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("busybox --list-full")?;
    ensure!(list.status.success(), "busybox --list-full failed");
    let mut applets = 0;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        cpio.symlink(applet, "/bin/busybox")?;
        applets += 1;
    }
    ensure!(applets > 100, "busybox lists only {applets} applets");

    let bin = stripped(test_bin, work)?;
    let data = std::fs::read(&bin).with_context(|| format!("read {}", bin.display()))?;
    cpio.file(GUEST_BINARY, 0o755, &data)?;

    let mut libs: BTreeSet<PathBuf> = BTreeSet::new();
    libs.extend(shared_libraries(test_bin)?);
    libs.extend(shared_libraries(busybox)?);
    for lib in &libs {
        // Stored at the path ldd names, with the content behind symlinks
        // (/lib is a symlink to /usr/lib on merged-/usr Debian).
        let data = std::fs::read(lib).with_context(|| format!("read {}", lib.display()))?;
        let mode = std::fs::metadata(lib)?.permissions().mode() & 0o7777;
        cpio.file(&lib.to_string_lossy(), mode | 0o444, &data)?;
    }
    cpio.file("init", 0o755, init_script(opts).as_bytes())?;
    let mut w = cpio.finish()?;
    w.flush()?;
    eprintln!(
        "xtask: vm-test: initramfs: busybox + {applets} applets, {}, libraries: {}",
        test_bin.display(),
        libs.iter()
            .map(|l| l.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

// ------------------------------------------------------------------- boot

struct Run {
    lines: Vec<String>,
    elapsed: Duration,
    /// Seconds from qemu start to the first line printed by /init.
    first_init_line: Option<f64>,
    /// The guest kernel reported a soft lockup (its first report): the
    /// guest never recovers from one, so the VM was stopped early.
    lockup: Option<String>,
}

/// What the guest kernel prints when a CPU spins in the kernel for too long.
const LOCKUP_MARKER: &str = "BUG: soft lockup";
/// How long the console is still read after a lockup report (its stack
/// trace follows it).
const LOCKUP_TRACE_WAIT: Duration = Duration::from_secs(15);

fn boot(qemu: &Path, kernel: &Path, initrd: &Path, log: &Path, opts: &Options) -> Result<Run> {
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", "tcg", "-machine", "pc"])
        .args(["-m", &opts.memory_mib.to_string()])
        .args(["-smp", &opts.smp.to_string()])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 quiet loglevel=5 panic=-1 oops=panic rdinit=/init",
        ])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-nodefaults",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!(
        "xtask: vm-test: booting (timeout {}s): {cmd:?}",
        opts.timeout.as_secs()
    );
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start qemu")?;
    let stdout = child.stdout.take().expect("piped");
    let mut log_file = File::create(log).with_context(|| format!("create {}", log.display()))?;
    let (tx, rx) = mpsc::channel::<(String, f64)>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .replace('\r', "");
                    let _ = writeln!(log_file, "{line}");
                    println!("guest| {line}");
                    if tx.send((line, started.elapsed().as_secs_f64())).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut lines = Vec::new();
    let mut first_init_line = None;
    let mut timed_out = false;
    let mut lockup: Option<(String, Instant)> = None;
    let status = loop {
        while let Ok((line, at)) = rx.try_recv() {
            if first_init_line.is_none() && line.contains(CONTROLLERS_MARKER) {
                first_init_line = Some(at);
            }
            if lockup.is_none() && line.contains(LOCKUP_MARKER) {
                lockup = Some((line.clone(), Instant::now()));
            }
            lines.push(line);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if lockup
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() > LOCKUP_TRACE_WAIT)
        {
            let _ = child.kill();
            break child.wait()?;
        }
        if started.elapsed() > opts.timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    while let Ok((line, at)) = rx.try_recv() {
        if first_init_line.is_none() && line.contains(CONTROLLERS_MARKER) {
            first_init_line = Some(at);
        }
        lines.push(line);
    }
    let elapsed = started.elapsed();
    if let Some((line, _)) = lockup {
        return Ok(Run {
            lines,
            elapsed,
            first_init_line,
            lockup: Some(line),
        });
    }
    if timed_out {
        bail!(
            "vm-test: the VM did not finish within {}s; killed qemu (console log {})",
            opts.timeout.as_secs(),
            log.display()
        );
    }
    eprintln!(
        "xtask: vm-test: qemu exited ({status}) after {:.1}s",
        elapsed.as_secs_f64()
    );
    Ok(Run {
        lines,
        elapsed,
        first_init_line,
        lockup: None,
    })
}

// ------------------------------------------------------------------ check

struct Summary {
    controllers: String,
    passed: u64,
    failed: u64,
    ignored: u64,
    boot_secs: Option<f64>,
    suite_secs: Option<f64>,
    /// Guest time / host time of the calibration loop.
    slowdown: Option<f64>,
}

/// The text after `marker` on the last line holding it.
fn marker<'a>(lines: &'a [String], marker: &str) -> Option<&'a str> {
    lines
        .iter()
        .rev()
        .find_map(|l| l.split_once(marker).map(|(_, v)| v.trim()))
}

/// "test result: ok. 39 passed; 0 failed; 0 ignored; ..." → counts.
fn libtest_counts(lines: &[String]) -> Option<(u64, u64, u64)> {
    let line = lines.iter().rev().find(|l| l.contains("test result:"))?;
    let count = |what: &str| -> Option<u64> {
        let end = line.find(&format!(" {what}"))?;
        line[..end]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((count("passed")?, count("failed")?, count("ignored")?))
}

fn check(run: &Run, opts: &Options, host_calibration: Option<f64>) -> Result<Summary> {
    let lines = &run.lines;
    let controllers = marker(lines, CONTROLLERS_MARKER)
        .context("/init never reported the cgroup2 controllers (the guest did not boot?)")?
        .to_string();
    let subtree = marker(lines, SUBTREE_MARKER).unwrap_or_default();
    for c in ["memory", "pids", "cpu"] {
        ensure!(
            subtree.split_whitespace().any(|s| s == c),
            "cgroup v2 controller {c} not enabled in the guest (available: {controllers:?}, \
             enabled: {subtree:?})"
        );
    }
    ensure!(
        marker(lines, KILL_MARKER) == Some("yes"),
        "the guest kernel has no cgroup.kill"
    );
    let code: i32 = marker(lines, RESULT_MARKER)
        .context("no result marker on the guest console (the suite crashed or hung?)")?
        .parse()
        .context("unreadable result marker")?;
    // The isolated pass is what precedes the host pass's marker.
    let split = lines
        .iter()
        .position(|l| l.contains(HOST_PASS_MARKER))
        .unwrap_or(lines.len());
    let (isolated, host) = lines.split_at(split);
    let Some((passed, failed, ignored)) = libtest_counts(isolated) else {
        bail!("no libtest summary on the guest console (the suite exited with {code})");
    };
    let host_code: i32 = marker(lines, HOST_RESULT_MARKER)
        .context("no result of the host-process pass on the guest console")?
        .parse()
        .context("unreadable host-process result marker")?;
    let Some((host_passed, host_failed, host_ignored)) = libtest_counts(host) else {
        bail!("no libtest summary of the host-process pass (it exited with {host_code})");
    };
    eprintln!(
        "xtask: vm-test: host-process pass (isolation none, commands cloned into their \
         cgroup): {host_passed} passed, {host_failed} failed, {host_ignored} skipped as needing \
         isolation, exit {host_code}"
    );
    ensure!(
        host_code == 0 && host_failed == 0 && host_passed > 0,
        "the host-process pass failed in the VM (exit {host_code}, {host_failed} failed)"
    );
    let leftover: u64 = marker(lines, LEFTOVER_MARKER)
        .and_then(|v| v.parse().ok())
        .context("no leftover-cgroup marker")?;
    let start: Option<f64> = marker(lines, START_MARKER).and_then(|v| v.parse().ok());
    let end: Option<f64> = marker(lines, END_MARKER).and_then(|v| v.parse().ok());
    let suite_secs = start.zip(end).map(|(s, e)| e - s);
    let guest_calibration = marker(lines, CALIBRATION_MARKER).and_then(|v| {
        let (t0, t1) = v.split_once(' ')?;
        Some(t1.trim().parse::<f64>().ok()? - t0.trim().parse::<f64>().ok()?)
    });
    let slowdown = guest_calibration
        .zip(host_calibration)
        .filter(|(_, h)| *h > 0.0)
        .map(|(g, h)| g / h);
    eprintln!(
        "xtask: vm-test: guest: {passed} passed, {failed} failed, {ignored} ignored, exit {code}, \
         {leftover} leftover cgroups; boot to /init {}, suite {} at time scale {}",
        run.first_init_line
            .map_or("?".to_string(), |s| format!("{s:.1}s")),
        suite_secs.map_or("?".to_string(), |s| format!("{s:.1}s")),
        opts.scale
    );
    ensure!(
        code == 0,
        "the conformance suite failed in the VM (exit {code})"
    );
    ensure!(
        failed == 0,
        "{failed} conformance cases failed on cgroup v2"
    );
    ensure!(
        ignored == 0,
        "{ignored} conformance cases were ignored on cgroup v2 (every case must run)"
    );
    ensure!(passed > 0, "no conformance case ran");
    ensure!(
        leftover == 0,
        "{leftover} workspace cgroups left under /sys/fs/cgroup/runbox"
    );
    Ok(Summary {
        controllers,
        passed,
        failed,
        ignored,
        boot_secs: run.first_init_line.or(start),
        suite_secs,
        slowdown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_unescapes() {
        let l = r#"{"reason":"compiler-artifact","target":{"name":"conformance"},"executable":"/a/b\\c\"d"}"#;
        assert_eq!(json_string(l, "name").as_deref(), Some("conformance"));
        assert_eq!(json_string(l, "executable").as_deref(), Some("/a/b\\c\"d"));
        assert_eq!(json_string(r#"{"executable":null}"#, "executable"), None);
    }

    #[test]
    fn libtest_counts_parse() {
        let lines = vec![
            "noise".to_string(),
            "test result: ok. 39 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; \
             finished in 12.3s"
                .to_string(),
        ];
        assert_eq!(libtest_counts(&lines), Some((39, 0, 2)));
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut c = Cpio::new(Vec::new());
        c.file("a/bc", 0o644, b"hello").unwrap();
        c.symlink("a/l", "/x").unwrap();
        let out = c.finish().unwrap();
        assert_eq!(out.len() % 512, 0);
        assert!(out.starts_with(b"070701"));
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("a/bc\0"));
        assert!(s.contains("TRAILER!!!\0"));
    }
}
