//! Unit tests of the contract's plain data.

use super::*;
use crate::error::Error;
use proptest::prelude::*;
use std::time::Duration;

#[test]
fn ids_are_validated() {
    assert!(WorkspaceId::new("rb-123_abc.x").is_ok());
    for bad in ["", ".", "..", "../x", "a/b", "a b", ".hidden", "x\0"] {
        assert!(WorkspaceId::new(bad).is_err(), "{bad:?}");
    }
    assert!(WorkspaceId::new("a".repeat(129)).is_err());
}

#[test]
fn command_validation() {
    assert!(CommandSpec::new(Vec::<String>::new()).build().is_err());
    assert!(CommandSpec::new([""]).build().is_err());
    assert!(CommandSpec::new(["a\0b"]).build().is_err());
    assert!(CommandSpec::new(["true"]).env("A=B", "x").build().is_err());
    assert!(CommandSpec::new(["true"]).env("", "x").build().is_err());
    assert!(CommandSpec::new(["true"])
        .timeout(Duration::ZERO)
        .build()
        .is_err());
    assert!(CommandSpec::new(["true"]).output_limit(0).build().is_err());
    assert!(matches!(
        CommandSpec::new(["true"]).workdir("../x").build(),
        Err(Error::PathEscapesSandbox { .. })
    ));
    assert_eq!(
        CommandSpec::new(["true"])
            .workdir("./a/b")
            .build()
            .unwrap()
            .workdir()
            .map(|w| w.as_str().to_string()),
        Some("a/b".to_string())
    );
    assert!(CommandSpec::shell("echo hi").env("A", "b").build().is_ok());
}

#[test]
fn mounts_are_valid_by_construction() {
    let p = crate::SandboxPath::new("data").unwrap();
    let m = Mount::new("/srv/data", p.clone(), true).unwrap();
    assert_eq!(m.host(), std::path::Path::new("/srv/data"));
    assert_eq!(m.sandbox(), &p);
    assert!(m.is_read_only());
    assert!(matches!(
        Mount::new("rel/data", p, true),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        Mount::new("/srv", crate::SandboxPath::root(), false),
        Err(Error::InvalidInput(_))
    ));
    let spec = WorkspaceSpec::new().mount(m.clone());
    assert_eq!(spec.mounts, [m]);
}

#[test]
fn capped_buffer_caps() {
    let mut b = CappedBuffer::new(5);
    assert_eq!(b.push(b"abc"), b"abc");
    assert!(!b.truncated());
    assert_eq!(b.push(b"defg"), b"de");
    assert!(b.truncated());
    assert_eq!(b.push(b"x"), b"");
    assert_eq!(b.into_parts(), (b"abcde".to_vec(), true));
}

#[test]
fn status_names() {
    assert_eq!(ExitStatus::Exited(3).code(), Some(3));
    assert_eq!(ExitStatus::Signaled(9).signal(), Some(9));
    assert_eq!(ExitStatus::TimedOut.name(), "timed_out");
    assert!(ExitStatus::Exited(0).success());
    assert!(!ExitStatus::Exited(1).success());
}

proptest! {
    #[test]
    fn id_roundtrip(s in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}") {
        let id = WorkspaceId::new(s.clone()).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
    }

    #[test]
    fn ids_never_contain_separators(s in ".{0,140}") {
        if let Ok(id) = WorkspaceId::new(s) {
            prop_assert!(!id.as_str().contains('/'));
            prop_assert!(id.as_str() != "." && id.as_str() != "..");
        }
    }

    #[test]
    fn capped_buffer_never_exceeds(cap in 0u64..64, chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 0..8)) {
        let mut b = CappedBuffer::new(cap);
        let total: usize = chunks.iter().map(Vec::len).sum();
        for c in &chunks { b.push(c); }
        prop_assert!(b.data().len() as u64 <= cap);
        prop_assert_eq!(b.truncated(), total as u64 > cap);
    }
}
