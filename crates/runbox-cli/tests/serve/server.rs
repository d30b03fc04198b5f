//! The real `runbox serve` binary, started for one test in a state
//! directory and workspace root of its own, on a port the kernel picks.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{request, Resp};

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub token: Option<String>,
    log: Arc<Mutex<String>>,
}

fn spawn(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbox"));
    cmd.arg("serve")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUNBOX_WORKSPACE_ROOT", dir.join("ws"))
        .env_remove("RUNBOX_TOKENS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start runbox serve");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("runbox serve: listening on http://") {
                let _ = tx.send(a.parse::<SocketAddr>().ok());
            }
            let mut g = l.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(a)) => a,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runbox serve did not start: {}", log.lock().unwrap());
        }
    };
    (child, addr, log)
}

impl Server {
    /// A server without tokens.
    pub fn start(args: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), args, &[], None)
    }

    /// A server with these tokens; requests carry the first.
    pub fn with_tokens(tokens: &[&str], args: &[&str]) -> Self {
        let joined = tokens.join(",");
        Self::start_in(
            tempfile::tempdir().unwrap(),
            args,
            &[("RUNBOX_TOKENS", joined.as_str())],
            tokens.first().map(|t| t.to_string()),
        )
    }

    pub fn start_in(
        dir: tempfile::TempDir,
        args: &[&str],
        envs: &[(&str, &str)],
        token: Option<String>,
    ) -> Self {
        let (child, addr, log) = spawn(dir.path(), args, envs);
        Self {
            child: Some(child),
            addr,
            dir,
            token,
            log,
        }
    }

    /// The same state directory, started again (after a crash).
    pub fn restart(&mut self, args: &[&str]) {
        let (child, addr, log) = spawn(self.dir.path(), args, &[]);
        self.child = Some(child);
        self.addr = addr;
        self.log = log;
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// The workspace root of its sandboxes.
    pub fn workspaces(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("ws"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// A request with the server's token (if any) and extra headers.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                h.push(("Authorization", a.as_str()));
            }
        }
        request(self.addr, method, path, &h, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, &[], b"")
    }

    /// A sandbox's id, created with `body`.
    pub fn sandbox(&self, body: &Value) -> String {
        let r = self.post("/v1/sandboxes", body);
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then the exit status (within `within`).
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(within)
            .expect("runbox serve did not exit after SIGTERM")
    }

    /// kill -9.
    pub fn crash(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(10)).expect("not killed");
    }

    fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGTERM);
            if self.wait(Duration::from_secs(30)).is_none() {
                self.signal(libc::SIGKILL);
                let _ = self.wait(Duration::from_secs(5));
            }
        }
    }
}

/// Polls `f` until it holds, at most `within`.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Processes on the host whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                v.push(pid);
            }
        }
    }
    v
}
