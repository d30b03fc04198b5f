//! Unit and property tests of limit validation, overlay and reports.

use super::*;
use proptest::prelude::*;

#[test]
fn builder_accepts_sane_values() {
    let l = ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .cpus(1.5)
        .pids(64)
        .wall_timeout(Duration::from_secs(10))
        .cpu_time(Duration::from_secs(5))
        .file_size_bytes(1 << 20)
        .open_files(64)
        .output_bytes(1 << 16)
        .build()
        .unwrap();
    assert_eq!(l.requested().len(), 8);
    assert!(!l.is_empty());
    assert!(ResourceLimits::default().is_empty());
}

#[test]
fn rejects_bad_values() {
    let bad = [
        ResourceLimits::builder().memory_bytes(0),
        ResourceLimits::builder().memory_bytes(1),
        ResourceLimits::builder().memory_bytes(u64::MAX),
        ResourceLimits::builder().cpus(0.0),
        ResourceLimits::builder().cpus(-1.0),
        ResourceLimits::builder().cpus(f64::NAN),
        ResourceLimits::builder().cpus(f64::INFINITY),
        ResourceLimits::builder().pids(0),
        ResourceLimits::builder().pids(u64::MAX),
        ResourceLimits::builder().wall_timeout(Duration::ZERO),
        ResourceLimits::builder().wall_timeout(Duration::MAX),
        ResourceLimits::builder().cpu_time(Duration::ZERO),
        ResourceLimits::builder().file_size_bytes(0),
        ResourceLimits::builder().open_files(0),
        ResourceLimits::builder().open_files(u64::MAX),
        ResourceLimits::builder().output_bytes(0),
    ];
    for b in bad {
        let e = b.clone().build().unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{b:?} gave {e:?}");
    }
}

#[test]
fn requested_roundtrips_through_the_builder() {
    let l = ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .cpus(0.5)
        .wall_timeout(Duration::from_secs(3))
        .strict(true)
        .build()
        .unwrap();
    let mut b = ResourceLimits::builder().strict(l.strict());
    for (k, v) in l.requested() {
        b = b.limit(k, v).unwrap();
    }
    assert_eq!(b.build().unwrap(), l);
    assert!(ResourceLimits::builder()
        .limit(LimitKind::Memory, LimitValue::Cpus(1.0))
        .is_err());
}

#[test]
fn overlay_keeps_unset_and_takes_new_strict() {
    let cur = ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .pids(10)
        .strict(true)
        .build()
        .unwrap();
    let new = ResourceLimits::builder().pids(20).build().unwrap();
    let m = cur.overlay(&new);
    assert_eq!(m.memory_bytes(), Some(64 << 20));
    assert_eq!(m.pids(), Some(20));
    assert!(!m.strict());
    assert!(cur.overlay(&new.clone().with_strict(true)).strict());
}

#[test]
fn strict_report() {
    let mut r = LimitReport::default();
    assert!(r.check_strict().is_ok());
    r.entries.push(LimitEntry {
        kind: LimitKind::Memory,
        requested: LimitValue::Bytes(1 << 20),
        enforced_by: None,
        note: Some("no cgroup".into()),
    });
    match r.check_strict() {
        Err(Error::LimitNotEnforceable { limit, reason }) => {
            assert_eq!(limit, LimitKind::Memory);
            assert_eq!(reason, "no cgroup");
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #[test]
    fn memory_validation_matches_range(b in any::<u64>()) {
        let ok = ResourceLimits::builder().memory_bytes(b).build().is_ok();
        prop_assert_eq!(ok, (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&b));
    }

    #[test]
    fn cpus_validation_matches_range(c in any::<f64>()) {
        let ok = ResourceLimits::builder().cpus(c).build().is_ok();
        prop_assert_eq!(ok, c.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(&c));
    }

    #[test]
    fn durations_validated(ms in any::<u64>()) {
        let d = Duration::from_millis(ms);
        let ok = ResourceLimits::builder().wall_timeout(d).cpu_time(d).build().is_ok();
        prop_assert_eq!(ok, ms > 0 && d <= MAX_DURATION);
    }

    #[test]
    fn counts_validated(n in any::<u64>()) {
        prop_assert_eq!(ResourceLimits::builder().pids(n).build().is_ok(), (1..=MAX_PIDS).contains(&n));
        prop_assert_eq!(ResourceLimits::builder().open_files(n).build().is_ok(), (1..=MAX_OPEN_FILES).contains(&n));
        prop_assert_eq!(ResourceLimits::builder().file_size_bytes(n).build().is_ok(), (1..=MAX_FILE_SIZE).contains(&n));
        prop_assert_eq!(ResourceLimits::builder().output_bytes(n).build().is_ok(), (1..=MAX_OUTPUT_BYTES).contains(&n));
    }
}
