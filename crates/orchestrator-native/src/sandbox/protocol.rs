//! What the service and a sandbox init say to each other: the setup of a
//! sandbox, the requests to start and kill commands, and the init's
//! replies, each encoded with [`wire`](super::wire).

use std::path::PathBuf;

use super::wire::{Malformed, Reader, Writer};
use crate::process::spawn::Rlimit as Limit;

/// How to build one sandbox (the first message, read by the outer process).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Setup {
    /// The workspace directory on the host, bound read-write at
    /// `/workspace`.
    pub workspace: PathBuf,
    /// The host uid and gid the sandbox user maps to.
    pub host_uid: u32,
    pub host_gid: u32,
    /// Share the host's network (else a network namespace with loopback).
    pub host_network: bool,
    /// Host directories bound read-only at the same path (a symlink on the
    /// host, as `/bin` on merged-/usr systems, is recreated as a symlink).
    pub system: Vec<PathBuf>,
    /// Entries of the host's `/etc` carried over read-only (missing ones
    /// are skipped).
    pub etc: Vec<String>,
    /// Extra binds: host path, path under `/workspace`, read-only.
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// Caps of the private `/tmp` (and `/dev/shm`) tmpfs.
    pub tmp_bytes: u64,
    pub tmp_inodes: u64,
}

const SETUP: u8 = 1;
const SPAWN: u8 = 2;
const KILL: u8 = 3;
const KILL_ALL: u8 = 4;
const MAPPED: u8 = 5;
const JOIN: u8 = 6;
const UNSHARED: u8 = 9;
const READY: u8 = 10;
const SETUP_FAILED: u8 = 11;
const STARTED: u8 = 12;
const START_FAILED: u8 = 13;
const EXITED: u8 = 14;
const JOINED: u8 = 15;

fn path_bytes(p: &std::path::Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

fn path_of(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

impl Setup {
    pub fn encode(&self) -> Vec<u8> {
        Writer::new(SETUP)
            .bytes(path_bytes(&self.workspace))
            .u32(self.host_uid)
            .u32(self.host_gid)
            .u8(self.host_network as u8)
            .list(&self.system, |w, p| w.bytes(path_bytes(p)))
            .list(&self.etc, |w, e| w.bytes(e.as_bytes()))
            .list(&self.mounts, |w, (h, s, ro)| {
                w.bytes(path_bytes(h)).bytes(s.as_bytes()).u8(*ro as u8)
            })
            .u64(self.tmp_bytes)
            .u64(self.tmp_inodes)
            .finish()
    }

    pub fn decode(body: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        if r.u8()? != SETUP {
            return Err(Malformed("not a setup message"));
        }
        let s = Self {
            workspace: path_of(r.bytes()?),
            host_uid: r.u32()?,
            host_gid: r.u32()?,
            host_network: r.u8()? != 0,
            system: r.list(|r| Ok(path_of(r.bytes()?)))?,
            etc: r.list(|r| r.string())?,
            mounts: r.list(|r| Ok((path_of(r.bytes()?), r.string()?, r.u8()? != 0)))?,
            tmp_bytes: r.u64()?,
            tmp_inodes: r.u64()?,
        };
        r.end()?;
        Ok(s)
    }
}

/// Start a command. Its descriptors travel with the message: stdin (when
/// `stdin` is set), stdout, stderr, then `cgroups` cgroup.procs files to
/// join.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spawn {
    pub id: u64,
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    /// Absolute, inside the sandbox.
    pub cwd: Vec<u8>,
    pub limits: Vec<Limit>,
    pub stdin: bool,
    pub cgroups: u32,
}

/// A request to the init.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Spawn(Spawn),
    /// SIGKILL the command's process group and its descendants.
    Kill {
        id: u64,
    },
    /// SIGKILL every process of the sandbox but the init.
    KillAll,
    /// The service wrote the outer process's uid and gid maps.
    Mapped,
    /// Move the init into the cgroup whose `cgroup.procs` files travel
    /// with the message (one per hierarchy), so that every command it
    /// forks from then on is born there, with no attach of its own.
    Join {
        id: u64,
    },
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Spawn(s) => Writer::new(SPAWN)
                .u64(s.id)
                .list(&s.argv, |w, a| w.bytes(a))
                .list(&s.env, |w, e| w.bytes(e))
                .bytes(&s.cwd)
                .list(&s.limits, |w, l| w.u32(l.resource).u64(l.soft).u64(l.hard))
                .u8(s.stdin as u8)
                .u32(s.cgroups)
                .finish(),
            Request::Kill { id } => Writer::new(KILL).u64(*id).finish(),
            Request::KillAll => Writer::new(KILL_ALL).finish(),
            Request::Mapped => Writer::new(MAPPED).finish(),
            Request::Join { id } => Writer::new(JOIN).u64(*id).finish(),
        }
    }

    pub fn decode(body: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let req = match r.u8()? {
            SPAWN => Request::Spawn(Spawn {
                id: r.u64()?,
                argv: r.list(|r| Ok(r.bytes()?.to_vec()))?,
                env: r.list(|r| Ok(r.bytes()?.to_vec()))?,
                cwd: r.bytes()?.to_vec(),
                limits: r.list(|r| {
                    Ok(Limit {
                        resource: r.u32()?,
                        soft: r.u64()?,
                        hard: r.u64()?,
                    })
                })?,
                stdin: r.u8()? != 0,
                cgroups: r.u32()?,
            }),
            KILL => Request::Kill { id: r.u64()? },
            KILL_ALL => Request::KillAll,
            MAPPED => Request::Mapped,
            JOIN => Request::Join { id: r.u64()? },
            _ => return Err(Malformed("unknown request")),
        };
        r.end()?;
        Ok(req)
    }
}

/// What the init tells the service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// The outer process is in its new namespaces: map its ids.
    Unshared,
    /// The sandbox is built; requests are served.
    Ready,
    /// Building the sandbox failed at `stage`.
    SetupFailed {
        stage: String,
        errno: i32,
    },
    Started {
        id: u64,
    },
    /// exec (or the set-up before it) failed with `errno`.
    StartFailed {
        id: u64,
        errno: i32,
    },
    /// The command's main process ended with this wait(2) status.
    Exited {
        id: u64,
        status: i32,
    },
    /// The init joined the cgroup of request `id` (`errno` 0), or could
    /// not (and is where it was).
    Joined {
        id: u64,
        errno: i32,
    },
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Unshared => Writer::new(UNSHARED).finish(),
            Reply::Ready => Writer::new(READY).finish(),
            Reply::SetupFailed { stage, errno } => Writer::new(SETUP_FAILED)
                .bytes(stage.as_bytes())
                .i32(*errno)
                .finish(),
            Reply::Started { id } => Writer::new(STARTED).u64(*id).finish(),
            Reply::StartFailed { id, errno } => {
                Writer::new(START_FAILED).u64(*id).i32(*errno).finish()
            }
            Reply::Exited { id, status } => Writer::new(EXITED).u64(*id).i32(*status).finish(),
            Reply::Joined { id, errno } => Writer::new(JOINED).u64(*id).i32(*errno).finish(),
        }
    }

    pub fn decode(body: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let rep = match r.u8()? {
            UNSHARED => Reply::Unshared,
            READY => Reply::Ready,
            SETUP_FAILED => Reply::SetupFailed {
                stage: r.string()?,
                errno: r.i32()?,
            },
            STARTED => Reply::Started { id: r.u64()? },
            START_FAILED => Reply::StartFailed {
                id: r.u64()?,
                errno: r.i32()?,
            },
            EXITED => Reply::Exited {
                id: r.u64()?,
                status: r.i32()?,
            },
            JOINED => Reply::Joined {
                id: r.u64()?,
                errno: r.i32()?,
            },
            _ => return Err(Malformed("unknown reply")),
        };
        r.end()?;
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let setup = Setup {
            workspace: "/dev/shm/ws".into(),
            host_uid: 7,
            host_gid: 8,
            host_network: true,
            system: vec!["/usr".into(), "/bin".into()],
            etc: vec!["ld.so.cache".into()],
            mounts: vec![("/data".into(), "data".into(), true)],
            tmp_bytes: 1 << 20,
            tmp_inodes: 100,
        };
        assert_eq!(Setup::decode(&setup.encode()).unwrap(), setup);
        let reqs = [
            Request::Spawn(Spawn {
                id: 3,
                argv: vec![b"sh".to_vec(), b"-c".to_vec()],
                env: vec![b"A=b".to_vec()],
                cwd: b"/workspace".to_vec(),
                limits: vec![Limit {
                    resource: 1,
                    soft: 2,
                    hard: 3,
                }],
                stdin: true,
                cgroups: 2,
            }),
            Request::Kill { id: 9 },
            Request::KillAll,
            Request::Mapped,
            Request::Join { id: 4 },
        ];
        for r in reqs {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        let reps = [
            Reply::Unshared,
            Reply::Ready,
            Reply::SetupFailed {
                stage: "pivot_root".into(),
                errno: 1,
            },
            Reply::Started { id: 1 },
            Reply::StartFailed { id: 1, errno: 2 },
            Reply::Exited { id: 1, status: 9 },
            Reply::Joined { id: 2, errno: 13 },
        ];
        for r in reps {
            assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        }
        assert!(Request::decode(&Reply::Ready.encode()).is_err());
        assert!(Reply::decode(&[]).is_err());
    }
}
