//! Fixture tests of every cgroup file the backend writes or reads: temp
//! directories laid out like a cgroup v2 and a cgroup v1 filesystem, with
//! the files the kernel would create.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Creates `dir` with `files` (name, content), as the kernel does for a
/// new cgroup.
fn cgroup_dir(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A child of this test process, to be killed through the cgroup code.
struct Victim(std::process::Child);

impl Victim {
    fn spawn() -> Self {
        Self(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> Pid {
        Pid::new(self.0.id() as i32).unwrap()
    }

    /// Whether it died of SIGKILL (waiting a bounded time).
    fn killed(mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        for _ in 0..500 {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s.signal() == Some(libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        false
    }
}

const V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

/// A v2 root with `parent` ready (cgroup.procs, and cgroup.kill when
/// `kill`), detected.
fn v2_fixture(kill: bool) -> (tempfile::TempDir, CgroupSupport) {
    let root = tempfile::tempdir().unwrap();
    cgroup_dir(root.path(), &[("cgroup.controllers", V2_CONTROLLERS)]);
    let mut files = vec![("cgroup.procs", "")];
    if kill {
        files.push(("cgroup.kill", ""));
    }
    cgroup_dir(&root.path().join("runbox"), &files);
    let v2 = v2::V2::detect(root.path(), "runbox").unwrap();
    let support = CgroupSupport {
        hierarchy: Arc::new(v2),
        parent: "runbox".into(),
    };
    (root, support)
}

/// The files the kernel gives a v2 cgroup, as far as the backend uses them.
const V2_FILES: [(&str, &str); 8] = [
    ("cgroup.procs", ""),
    ("memory.max", "max\n"),
    ("memory.swap.max", "max\n"),
    ("memory.peak", "0\n"),
    ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
    ("pids.max", "max\n"),
    ("cpu.max", "max 100000\n"),
    ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
];

fn v2_workspace(support: &CgroupSupport, root: &Path) -> (WorkspaceCgroup, std::path::PathBuf) {
    let cg = support.create("ws-1").unwrap();
    let dir = root.join("runbox/ws-1");
    cgroup_dir(&dir, &V2_FILES);
    (cg, dir)
}

#[test]
fn v2_detection_needs_the_controllers() {
    let root = tempfile::tempdir().unwrap();
    cgroup_dir(root.path(), &[("cgroup.controllers", "cpu io memory\n")]);
    let e = v2::V2::detect(root.path(), "runbox").unwrap_err();
    assert!(e.contains("pids"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = v2::V2::detect(empty.path(), "runbox").unwrap_err();
    assert!(e.contains("cgroup.controllers"), "{e}");
}

#[test]
fn v2_detection_needs_a_writable_parent() {
    let root = tempfile::tempdir().unwrap();
    cgroup_dir(root.path(), &[("cgroup.controllers", V2_CONTROLLERS)]);
    // No cgroup.procs in the parent: processes could not be moved in.
    let e = v2::V2::detect(root.path(), "runbox").unwrap_err();
    assert!(e.contains("not writable"), "{e}");
}

#[test]
fn v2_create_enables_controllers_on_every_ancestor() {
    let (root, support) = v2_fixture(true);
    assert_eq!(support.version(), CgroupVersion::V2);
    let root = root.path();
    // Each controller is enabled by its own write; the last one stays.
    assert_eq!(read(root, "cgroup.subtree_control"), "+cpu");
    support.create("ws-1").unwrap();
    assert!(root.join("runbox/ws-1").is_dir());
    assert_eq!(read(&root.join("runbox"), "cgroup.subtree_control"), "+cpu");
    // The workspace's own cgroup has no children to enable anything for.
    assert!(!root.join("runbox/ws-1/cgroup.subtree_control").exists());
}

#[test]
fn v2_limits_are_written_to_their_files() {
    let (root, support) = v2_fixture(true);
    let (cg, dir) = v2_workspace(&support, root.path());
    cg.set_memory(64 << 20).unwrap();
    assert_eq!(read(&dir, "memory.max"), "67108864");
    assert_eq!(read(&dir, "memory.swap.max"), "0");
    cg.set_pids(17).unwrap();
    assert_eq!(read(&dir, "pids.max"), "17");
    cg.set_cpus(1.5).unwrap();
    assert_eq!(read(&dir, "cpu.max"), "150000 100000");
    // The kernel's minimum quota is 1 ms.
    cg.set_cpus(0.001).unwrap();
    assert_eq!(read(&dir, "cpu.max"), "1000 100000");
}

#[test]
fn v2_memory_without_swap_accounting_leaves_swap_alone() {
    let (root, support) = v2_fixture(true);
    let (cg, dir) = v2_workspace(&support, root.path());
    std::fs::remove_file(dir.join("memory.swap.max")).unwrap();
    cg.set_memory(1 << 20).unwrap();
    assert_eq!(read(&dir, "memory.max"), "1048576");
    assert!(!dir.join("memory.swap.max").exists());
}

#[test]
fn v2_accounting_is_read_from_its_files() {
    let (root, support) = v2_fixture(true);
    let (cg, dir) = v2_workspace(&support, root.path());
    assert_eq!(cg.oom_kills(), 0);
    std::fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 4\noom 3\noom_kill 2\n",
    )
    .unwrap();
    assert_eq!(cg.oom_kills(), 2);
    std::fs::write(dir.join("memory.peak"), "4096\n").unwrap();
    assert_eq!(cg.peak_memory(None), Some(4096));
    std::fs::write(
        dir.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
    )
    .unwrap();
    assert_eq!(cg.cpu_usage(), Some(Duration::from_micros(1500)));
}

#[test]
fn v2_peak_is_reset_and_read_through_the_resetting_handle() {
    let (root, support) = v2_fixture(true);
    let (cg, dir) = v2_workspace(&support, root.path());
    let mut handle = cg.reset_peak().expect("memory.peak opened");
    assert_eq!(read(&dir, "memory.peak"), "reset\n");
    // What the kernel shows that handle after the reset.
    std::fs::write(dir.join("memory.peak"), "8192\n").unwrap();
    assert_eq!(cg.peak_memory(Some(&mut handle)), Some(8192));
}

#[test]
fn v2_kill_writes_cgroup_kill() {
    let (root, support) = v2_fixture(true);
    let (cg, dir) = v2_workspace(&support, root.path());
    std::fs::write(dir.join("cgroup.kill"), "").unwrap();
    // Fake pids: with cgroup.kill nothing is signalled.
    cg.controllers.kill(&[Pid::new(12).unwrap()], true);
    assert_eq!(read(&dir, "cgroup.kill"), "1");
}

#[test]
fn v2_without_cgroup_kill_signals_each_process() {
    let (root, support) = v2_fixture(false);
    let (cg, dir) = v2_workspace(&support, root.path());
    let victim = Victim::spawn();
    std::fs::write(dir.join("cgroup.procs"), format!("{}\n", victim.pid())).unwrap();
    assert_eq!(cg.procs(), vec![victim.pid()]);
    cg.controllers.kill(&cg.procs(), true);
    assert!(victim.killed());
    assert!(!dir.join("cgroup.kill").exists());
}

#[test]
fn procs_refuse_values_that_are_no_single_process() {
    let (root, support) = v2_fixture(true);
    let (cg, dir) = v2_workspace(&support, root.path());
    std::fs::write(dir.join("cgroup.procs"), "0\n-1\n34\n12\n\n34\n").unwrap();
    let want: Vec<Pid> = [12, 34].into_iter().filter_map(Pid::new).collect();
    assert_eq!(cg.procs(), want);
}

#[test]
fn joining_writes_zero_to_cgroup_procs() {
    let (root, support) = v2_fixture(true);
    let (cg, dir) = v2_workspace(&support, root.path());
    let fds = cg.attach_fds().unwrap();
    join_in_child(&raw(&fds)).unwrap();
    assert_eq!(read(&dir, "cgroup.procs"), "0");
}

#[test]
fn load_finds_only_existing_cgroups_and_remove_deletes_them() {
    let (root, support) = v2_fixture(true);
    assert!(support.load("ws-none").is_none());
    support.create("ws-2").unwrap();
    let cg = support.load("ws-2").expect("created cgroup loads");
    assert_eq!(cg.existing_dirs(), vec![root.path().join("runbox/ws-2")]);
    cg.remove().unwrap();
    assert!(!root.path().join("runbox/ws-2").exists());
    assert!(support.load("ws-2").is_none());
}

/// Controller mounts as /proc/self/mountinfo shows them on a hybrid host
/// with cpu and cpuacct mounted together, under `root`.
fn mountinfo(root: &Path) -> String {
    let r = root.display();
    format!(
        "31 23 0:28 / {r} rw,relatime - tmpfs tmpfs rw,mode=755\n\
         32 31 0:29 / {r}/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct\n\
         35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
         36 31 0:33 / {r}/devices rw,relatime - cgroup cgroup rw,devices\n\
         37 31 0:34 / {r}/freezer rw,relatime - cgroup cgroup rw,freezer\n\
         39 31 0:36 / {r}/pids rw,relatime - cgroup cgroup rw,pids\n\
         41 31 0:38 / {r}/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
}

const V1_MOUNTS: [&str; 4] = ["cpu,cpuacct", "memory", "freezer", "pids"];

/// A v1 fixture with `parent` ready in every hierarchy (and swap
/// accounting when `memsw`), detected.
fn v1_fixture(memsw: bool) -> (tempfile::TempDir, CgroupSupport) {
    let root = tempfile::tempdir().unwrap();
    for m in V1_MOUNTS {
        cgroup_dir(&root.path().join(m).join("runbox"), &[("cgroup.procs", "")]);
    }
    if memsw {
        let parent = root.path().join("memory/runbox");
        cgroup_dir(&parent, &[("memory.memsw.limit_in_bytes", "")]);
    }
    let v1 = v1::V1::detect(&mountinfo(root.path()), "runbox").unwrap();
    let support = CgroupSupport {
        hierarchy: Arc::new(v1),
        parent: "runbox".into(),
    };
    (root, support)
}

/// A workspace cgroup in the v1 fixture, with the files the kernel makes.
fn v1_workspace(support: &CgroupSupport, root: &Path) -> WorkspaceCgroup {
    let cg = support.create("ws-1").unwrap();
    let ws = |m: &str| root.join(m).join("runbox/ws-1");
    cgroup_dir(
        &ws("memory"),
        &[
            ("cgroup.procs", ""),
            ("memory.limit_in_bytes", ""),
            ("memory.memsw.limit_in_bytes", ""),
            ("memory.swappiness", "60\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
            ("memory.max_usage_in_bytes", "0\n"),
        ],
    );
    cgroup_dir(&ws("pids"), &[("cgroup.procs", ""), ("pids.max", "max\n")]);
    cgroup_dir(
        &ws("cpu,cpuacct"),
        &[
            ("cgroup.procs", ""),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpuacct.usage", "0\n"),
        ],
    );
    cgroup_dir(
        &ws("freezer"),
        &[("cgroup.procs", ""), ("freezer.state", "THAWED\n")],
    );
    cg
}

#[test]
fn v1_detection_needs_every_controller_mounted() {
    let root = tempfile::tempdir().unwrap();
    let without_freezer: String = mountinfo(root.path())
        .lines()
        .filter(|l| !l.contains("freezer"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = v1::V1::detect(&without_freezer, "runbox").unwrap_err();
    assert!(e.contains("freezer"), "{e}");
}

#[test]
fn v1_create_makes_one_directory_per_mount_and_turns_the_oom_killer_on() {
    let (root, support) = v1_fixture(true);
    assert_eq!(support.version(), CgroupVersion::V1);
    let root = root.path();
    let cg = support.create("ws-1").unwrap();
    let mut want: Vec<_> = V1_MOUNTS
        .iter()
        .map(|m| root.join(m).join("runbox/ws-1"))
        .collect();
    want.sort();
    // cpu and cpuacct share a mount, so one directory serves both.
    assert_eq!(cg.existing_dirs(), want);
    assert_eq!(
        read(&root.join("memory/runbox/ws-1"), "memory.oom_control"),
        "0"
    );
}

/// A v1 workspace cgroup (swap accounting when `memsw`) and its memory
/// directory.
fn v1_memory(memsw: bool) -> (tempfile::TempDir, WorkspaceCgroup, std::path::PathBuf) {
    let (root, support) = v1_fixture(memsw);
    let cg = v1_workspace(&support, root.path());
    let mem = root.path().join("memory/runbox/ws-1");
    (root, cg, mem)
}

#[test]
fn v1_memory_with_swap_accounting_sets_both_limits() {
    let (_root, cg, mem) = v1_memory(true);
    cg.set_memory(32 << 20).unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "33554432");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "33554432");
    assert_eq!(read(&mem, "memory.swappiness"), "60\n");
}

#[test]
fn v1_memory_raises_memsw_first_when_the_limit_is_refused() {
    let (_root, cg, mem) = v1_memory(true);
    // A limit the kernel refuses (here: a file that cannot be written).
    std::fs::remove_file(mem.join("memory.limit_in_bytes")).unwrap();
    std::fs::create_dir(mem.join("memory.limit_in_bytes")).unwrap();
    let e = cg.set_memory(1 << 20).unwrap_err();
    assert!(e.to_string().contains("memory.limit_in_bytes"), "{e}");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "1048576");
}

#[test]
fn v1_memory_without_swap_accounting_sets_swappiness() {
    let (_root, cg, mem) = v1_memory(false);
    cg.set_memory(1 << 20).unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "1048576");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "");
    assert_eq!(read(&mem, "memory.swappiness"), "0");
}

#[test]
fn v1_pids_and_cpu_limits_are_written_to_their_files() {
    let (root, support) = v1_fixture(true);
    let cg = v1_workspace(&support, root.path());
    cg.set_pids(9).unwrap();
    assert_eq!(read(&root.path().join("pids/runbox/ws-1"), "pids.max"), "9");
    cg.set_cpus(0.5).unwrap();
    let cpu = root.path().join("cpu,cpuacct/runbox/ws-1");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
}

#[test]
fn v1_accounting_is_read_from_its_files() {
    let (root, cg, mem) = v1_memory(true);
    std::fs::write(
        mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    )
    .unwrap();
    assert_eq!(cg.oom_kills(), 3);
    std::fs::write(mem.join("memory.max_usage_in_bytes"), "123456\n").unwrap();
    assert_eq!(cg.peak_memory(None), Some(123456));
    // The reset goes through the file; no handle to keep.
    assert!(cg.reset_peak().is_none());
    assert_eq!(read(&mem, "memory.max_usage_in_bytes"), "0");
    let cpu = root.path().join("cpu,cpuacct/runbox/ws-1");
    std::fs::write(cpu.join("cpuacct.usage"), "2500000000\n").unwrap();
    assert_eq!(cg.cpu_usage(), Some(Duration::from_millis(2500)));
}

#[test]
fn v1_procs_are_the_union_of_every_hierarchy() {
    let (root, support) = v1_fixture(true);
    let cg = v1_workspace(&support, root.path());
    let ws = |m: &str| root.path().join(m).join("runbox/ws-1");
    std::fs::write(ws("memory").join("cgroup.procs"), "5\n").unwrap();
    std::fs::write(ws("pids").join("cgroup.procs"), "7\n5\n").unwrap();
    let want: Vec<Pid> = [5, 7].into_iter().filter_map(Pid::new).collect();
    assert_eq!(cg.procs(), want);
}

#[test]
fn v1_kill_freezes_kills_each_process_and_thaws() {
    let (root, support) = v1_fixture(true);
    let cg = v1_workspace(&support, root.path());
    let victim = Victim::spawn();
    let freezer = root.path().join("freezer/runbox/ws-1");
    std::fs::write(freezer.join("cgroup.procs"), format!("{}\n", victim.pid())).unwrap();
    cg.controllers.kill(&cg.procs(), true);
    assert!(victim.killed());
    assert_eq!(read(&freezer, "freezer.state"), "THAWED");
}
