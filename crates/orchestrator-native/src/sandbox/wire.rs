//! The messages between the service and a sandbox init, and how they cross
//! the control socket: one SOCK_SEQPACKET datagram per message, descriptors
//! as SCM_RIGHTS, a body too big for one datagram carried in a memfd.
//!
//! The encoding is a flat sequence of little-endian integers and
//! length-prefixed byte strings; both ends are this crate, so it needs no
//! versioning, only to refuse malformed input without panicking.

use std::io::{IoSlice, IoSliceMut, Read, Seek, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Bodies up to this size travel inline; bigger ones in a memfd (a
/// datagram is bounded by the socket's send buffer).
const INLINE_MAX: usize = 32 * 1024;
/// The most descriptors one message carries: stdio, one cgroup.procs per
/// v1 controller hierarchy (hosts split them: cpu and cpuacct apart), a
/// memfd body.
pub(crate) const MAX_FDS: usize = 16;
/// Receive buffer: an inline body plus its header.
const RECV_BUF: usize = INLINE_MAX + 64;

/// The first byte of a datagram whose body is in the memfd it carries.
const TAG_MEMFD: u8 = 0xff;

/// Appends fields to a message body.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    /// A body starting with message tag `tag`.
    pub fn new(tag: u8) -> Self {
        Self(vec![tag])
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(self, v: i32) -> Self {
        self.u32(v as u32)
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(self, v: &[u8]) -> Self {
        let mut s = self.u32(v.len() as u32);
        s.0.extend_from_slice(v);
        s
    }
    pub fn list<T>(self, items: &[T], mut each: impl FnMut(Self, &T) -> Self) -> Self {
        let mut s = self.u32(items.len() as u32);
        for i in items {
            s = each(s, i);
        }
        s
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// A malformed message.
#[derive(Debug, thiserror::Error)]
#[error("malformed sandbox message: {0}")]
pub(crate) struct Malformed(pub &'static str);

/// Reads fields off a message body.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Self(body)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(self.u32()? as i32)
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Malformed("not UTF-8"))
    }
    pub fn list<T>(
        &mut self,
        mut each: impl FnMut(&mut Self) -> Result<T, Malformed>,
    ) -> Result<Vec<T>, Malformed> {
        let n = self.u32()? as usize;
        // Each element takes at least one byte: a count beyond the rest of
        // the body is a lie, not a reason to allocate.
        if n > self.0.len() {
            return Err(Malformed("list longer than the message"));
        }
        (0..n).map(|_| each(self)).collect()
    }
    pub fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

/// A received message: its body and descriptors.
pub(crate) struct Received {
    pub body: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

fn memfd_with(body: &[u8]) -> std::io::Result<OwnedFd> {
    // SAFETY: the name is NUL-terminated; memfd_create returns a new fd.
    let fd = unsafe { libc::memfd_create(c"runbox-msg".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(body)?;
    f.rewind()?;
    Ok(f.into())
}

/// Sends one message with `fds`. `Ok(false)` when the socket would block
/// (non-blocking sockets); the message was not sent.
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<bool> {
    let memfd;
    let mut all: Vec<BorrowedFd<'_>> = Vec::with_capacity(fds.len() + 1);
    let data: &[u8] = if body.len() > INLINE_MAX {
        memfd = memfd_with(body)?;
        all.push(memfd.as_fd());
        &[TAG_MEMFD]
    } else {
        body
    };
    all.extend_from_slice(fds);
    if all.len() > MAX_FDS {
        return Err(std::io::Error::other(
            "too many descriptors for one message",
        ));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !all.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&all)) {
        return Err(std::io::Error::other("descriptor buffer too small"));
    }
    match sendmsg(
        sock,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    ) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::AGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Who sends what a socket end receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The service: requests may be big (their bodies come in a memfd).
    Service,
    /// A sandbox: the peer may be hostile, its replies are small, inline,
    /// and carry no descriptor.
    Sandbox,
}

/// Receives one message. `Ok(None)` at end of stream (the peer is gone);
/// `Err(WouldBlock)` on a non-blocking socket with nothing to read.
pub(crate) fn recv(sock: BorrowedFd<'_>, from: Peer) -> std::io::Result<Option<Received>> {
    let mut buf = vec![0u8; RECV_BUF];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC)
        || msg.flags.contains(rustix::net::ReturnFlags::CTRUNC)
    {
        return Err(std::io::Error::other(Malformed("message truncated")));
    }
    buf.truncate(msg.bytes);
    if from == Peer::Sandbox {
        // Nothing a sandbox sends needs a descriptor: one is refused (and
        // closed) rather than read, so it cannot be a FIFO to hang on or a
        // file to exhaust memory with.
        if !fds.is_empty() || buf.first() == Some(&TAG_MEMFD) {
            return Err(std::io::Error::other(Malformed(
                "a descriptor from the sandbox",
            )));
        }
        return Ok(Some(Received { body: buf, fds }));
    }
    if buf.first() == Some(&TAG_MEMFD) && buf.len() == 1 {
        if fds.is_empty() {
            return Err(std::io::Error::other(Malformed(
                "memfd message without its memfd",
            )));
        }
        let mut f = std::fs::File::from(fds.remove(0));
        let mut body = Vec::new();
        f.read_to_end(&mut body)?;
        return Ok(Some(Received { body, fds }));
    }
    Ok(Some(Received { body: buf, fds }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    #[test]
    fn fields_round_trip_and_truncations_are_refused() {
        let body = Writer::new(7)
            .u32(3)
            .i32(-5)
            .u64(u64::MAX)
            .bytes(b"abc")
            .list(&["x", "yz"], |w, s| w.bytes(s.as_bytes()))
            .finish();
        let mut r = Reader::new(&body);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.i32().unwrap(), -5);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.bytes().unwrap(), b"abc");
        let l = r.list(|r| r.string()).unwrap();
        assert_eq!(l, ["x", "yz"]);
        r.end().unwrap();
        for cut in 0..body.len() {
            let mut r = Reader::new(&body[..cut]);
            let all = (|| -> Result<(), Malformed> {
                r.u8()?;
                r.u32()?;
                r.i32()?;
                r.u64()?;
                r.bytes()?;
                r.list(|r| r.string())?;
                Ok(())
            })();
            assert!(all.is_err(), "a body cut at {cut} parsed");
        }
        // A count far beyond the body is refused without allocating.
        let lie = Writer::new(1).u32(u32::MAX).finish();
        let mut r = Reader::new(&lie[1..]);
        assert!(r.list(|r| r.u8()).is_err());
    }

    #[test]
    fn small_and_big_bodies_cross_with_descriptors() {
        let (a, b) = pair();
        let file = tempfile::tempfile().unwrap();
        let small = Writer::new(1).bytes(b"hello").finish();
        assert!(send(a.as_fd(), &small, &[file.as_fd()]).unwrap());
        let got = recv(b.as_fd(), Peer::Service).unwrap().unwrap();
        assert_eq!(got.body, small);
        assert_eq!(got.fds.len(), 1);

        let big = Writer::new(2).bytes(&vec![b'x'; 3 * INLINE_MAX]).finish();
        assert!(send(a.as_fd(), &big, &[]).unwrap());
        let got = recv(b.as_fd(), Peer::Service).unwrap().unwrap();
        assert_eq!(got.body, big);
        assert!(got.fds.is_empty());

        // From a sandbox, a descriptor or a memfd body is refused.
        assert!(send(a.as_fd(), &small, &[file.as_fd()]).unwrap());
        assert!(recv(b.as_fd(), Peer::Sandbox).is_err());
        assert!(send(a.as_fd(), &big, &[]).unwrap());
        assert!(recv(b.as_fd(), Peer::Sandbox).is_err());
        assert!(send(a.as_fd(), &small, &[]).unwrap());
        assert_eq!(recv(b.as_fd(), Peer::Sandbox).unwrap().unwrap().body, small);

        drop(a);
        assert!(
            recv(b.as_fd(), Peer::Service).unwrap().is_none(),
            "end of stream"
        );
    }
}
