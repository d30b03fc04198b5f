//! Parsers of flag values (clap value parsers): sizes, durations, counts,
//! cores, each limit checked against the core's range, isolation and
//! network modes, copy and mount specs and environment assignments. Each
//! returns the reason as a one-line `String`; the caller prefixes the
//! flag's name.

use std::path::PathBuf;
use std::time::Duration;

use orchestrator_core::{
    IsolationMode, LimitKind, LimitValue, Mount, NetworkMode, ResourceLimits, SandboxPath,
};

/// Splits `"64M"` into `("64", "M")`: the leading number (digits and at most
/// one dot) and the rest.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

/// Parses a non-negative decimal number ("12", "1.5") as f64, or as an exact
/// integer when it has no dot.
enum Number {
    Int(u64),
    Frac(f64),
}

fn parse_number(n: &str) -> Option<Number> {
    if n.is_empty() || n == "." || n.matches('.').count() > 1 {
        return None;
    }
    if n.contains('.') {
        n.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Number::Frac)
    } else {
        n.parse::<u64>().ok().map(Number::Int)
    }
}

/// A size: a number of bytes, or a number with a binary unit: `K`, `M`, `G`,
/// `T` (also written `KB`/`KiB`, ...; any case). `1.5G` is allowed.
fn size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {s:?}: expected a number of bytes or a number with a unit K, M, G or T (binary: 1K = 1024), e.g. 512K, 64M, 1G"
        )
    };
    let t = s.trim();
    let (num, unit) = split_number(t);
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    match parse_number(num).ok_or_else(bad)? {
        Number::Int(n) => n
            .checked_mul(mult)
            .ok_or_else(|| format!("size {s:?} is too large")),
        Number::Frac(f) => {
            let v = f * mult as f64;
            if v >= u64::MAX as f64 {
                Err(format!("size {s:?} is too large"))
            } else {
                Ok(v as u64)
            }
        }
    }
}

/// A duration: a number with a unit `ms`, `s`, `m` or `h` (also `us`), or a
/// plain number of seconds. `1.5s` is allowed.
fn duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {s:?}: expected a number with a unit ms, s, m or h (e.g. 500ms, 10s, 2m, 1h) or a number of seconds")
    };
    let t = s.trim();
    let (num, unit) = split_number(t);
    let secs_per_unit: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hrs" => 3600.0,
        _ => return Err(bad()),
    };
    let value = match parse_number(num).ok_or_else(bad)? {
        Number::Int(n) => n as f64,
        Number::Frac(f) => f,
    };
    Duration::try_from_secs_f64(value * secs_per_unit)
        .map_err(|_| format!("duration {s:?} is too large"))
}

/// A duration flag of `runbox serve` (TTLs, the grace period).
pub fn period(s: &str) -> Result<Duration, String> {
    duration(s)
}

/// A byte size flag of `runbox serve` (body caps), above 0.
pub fn body_size(s: &str) -> Result<u64, String> {
    match size(s)? {
        0 => Err(format!("invalid size {s:?}: must be above 0")),
        n => Ok(n),
    }
}

/// A positive count flag of `runbox serve` (`--max-concurrency`).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid value {s:?}: expected a whole number above 0"
        )),
    }
}

/// A count (processes, open files): a plain non-negative integer.
fn count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("invalid number {s:?}: expected a whole number, e.g. 64"))
}

/// CPU cores: a decimal number, e.g. `0.5` or `2`.
fn cores(s: &str) -> Result<f64, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "invalid number of cores {s:?}: expected a decimal number, e.g. 0.5 or 2"
        )),
    }
}

/// `v` if it is a valid limit of this kind on its own; else the core's
/// reason.
fn limit<T: Copy>(kind: LimitKind, v: T, value: fn(T) -> LimitValue) -> Result<T, String> {
    ResourceLimits::builder()
        .limit(kind, value(v))
        .and_then(|b| b.build())
        .map_err(|e| crate::error::core_message(&e))?;
    Ok(v)
}

/// `--memory`: a size within the memory limit's range.
pub fn memory(s: &str) -> Result<u64, String> {
    limit(LimitKind::Memory, size(s)?, LimitValue::Bytes)
}

/// `--cpus`: cores within the cpus limit's range.
pub fn cpus(s: &str) -> Result<f64, String> {
    limit(LimitKind::Cpus, cores(s)?, LimitValue::Cpus)
}

/// `--pids`: a count within the pids limit's range.
pub fn pids(s: &str) -> Result<u64, String> {
    limit(LimitKind::Pids, count(s)?, LimitValue::Count)
}

/// `--timeout`: a duration within the wall timeout's range.
pub fn timeout(s: &str) -> Result<Duration, String> {
    limit(LimitKind::WallTimeout, duration(s)?, LimitValue::Duration)
}

/// `--cpu-time`: a duration within the cpu time limit's range.
pub fn cpu_time(s: &str) -> Result<Duration, String> {
    limit(LimitKind::CpuTime, duration(s)?, LimitValue::Duration)
}

/// `--file-size`: a size within the file size limit's range.
pub fn file_size(s: &str) -> Result<u64, String> {
    limit(LimitKind::FileSize, size(s)?, LimitValue::Bytes)
}

/// `--open-files`: a count within the open files limit's range.
pub fn open_files(s: &str) -> Result<u64, String> {
    limit(LimitKind::OpenFiles, count(s)?, LimitValue::Count)
}

/// `--output-limit`: a size within the output limit's range.
pub fn output_limit(s: &str) -> Result<u64, String> {
    limit(LimitKind::OutputBytes, size(s)?, LimitValue::Bytes)
}

/// `--isolation`: `auto`, `full` or `none`.
pub fn isolation(s: &str) -> Result<IsolationMode, String> {
    s.parse()
        .map_err(|e: orchestrator_core::UnknownMode| e.to_string())
}

/// `--network`: `none` or `host`.
pub fn network(s: &str) -> Result<NetworkMode, String> {
    s.parse()
        .map_err(|e: orchestrator_core::UnknownMode| e.to_string())
}

/// Parses a sandbox path: relative, no `..`, not empty.
fn parse_sandbox_path(p: &str, spec: &str) -> Result<SandboxPath, String> {
    SandboxPath::new(p).map_err(|e| {
        format!(
            "invalid sandbox path {p:?} in {spec:?}: {}",
            crate::error::core_message(&e)
        )
    })
}

/// Checks a sandbox path: relative, no `..`, not empty.
fn sandbox_path(p: &str, spec: &str) -> Result<String, String> {
    parse_sandbox_path(p, spec)?;
    Ok(p.to_string())
}

fn host_path(p: &str) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("invalid host path {p:?}: {e}"))
}

/// `HOST_PATH:SANDBOX_PATH` (split at the last `:`, so host paths may hold
/// colons). The host path must exist.
pub fn copy_in(spec: &str) -> Result<(PathBuf, String), String> {
    let Some((host, sandbox)) = spec.rsplit_once(':') else {
        return Err(format!(
            "malformed copy spec {spec:?}: expected HOST_PATH:SANDBOX_PATH"
        ));
    };
    if host.is_empty() || sandbox.is_empty() {
        return Err(format!(
            "malformed copy spec {spec:?}: expected HOST_PATH:SANDBOX_PATH, both non-empty"
        ));
    }
    let sandbox = sandbox_path(sandbox, spec)?;
    let host = host_path(host)?;
    match std::fs::symlink_metadata(&host) {
        Ok(_) => Ok((host, sandbox)),
        Err(e) => Err(format!("cannot read host path {}: {e}", host.display())),
    }
}

/// `SANDBOX_PATH:HOST_PATH` (split at the first `:`).
pub fn copy_out(spec: &str) -> Result<(String, PathBuf), String> {
    let Some((sandbox, host)) = spec.split_once(':') else {
        return Err(format!(
            "malformed copy spec {spec:?}: expected SANDBOX_PATH:HOST_PATH"
        ));
    };
    if host.is_empty() || sandbox.is_empty() {
        return Err(format!(
            "malformed copy spec {spec:?}: expected SANDBOX_PATH:HOST_PATH, both non-empty"
        ));
    }
    let sandbox = sandbox_path(sandbox, spec)?;
    Ok((sandbox, host_path(host)?))
}

/// `HOST_PATH:SANDBOX_PATH[:ro|:rw]`, read-only unless `:rw`.
///
/// Split at every `:` (as `docker run -v` does), so a host path holding a
/// colon cannot be mounted: a spec is unambiguous without knowing which
/// paths exist. `HOST:ro` alone is refused rather than read as a mount at a
/// directory named `ro`. The host path is resolved against the current
/// directory with symlinks followed, so it must exist, and what is recorded
/// and mounted is the path it resolved to.
pub fn mount(spec: &str) -> Result<Mount, String> {
    const FORM: &str =
        "expected HOST_PATH:SANDBOX_PATH, HOST_PATH:SANDBOX_PATH:ro or HOST_PATH:SANDBOX_PATH:rw";
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, sandbox, read_only) = match parts.as_slice() {
        [host, sandbox] => (*host, *sandbox, true),
        [host, sandbox, "ro"] => (*host, *sandbox, true),
        [host, sandbox, "rw"] => (*host, *sandbox, false),
        [_, _, mode] => {
            return Err(format!(
                "unknown mount mode {mode:?} in {spec:?}: expected ro or rw"
            ))
        }
        _ => {
            return Err(format!(
                "malformed mount spec {spec:?}: {FORM} (host paths with ':' cannot be mounted)"
            ))
        }
    };
    if host.is_empty() || sandbox.is_empty() {
        return Err(format!(
            "malformed mount spec {spec:?}: {FORM}, both paths non-empty"
        ));
    }
    if parts.len() == 2 && (sandbox == "ro" || sandbox == "rw") {
        return Err(format!(
            "malformed mount spec {spec:?}: no SANDBOX_PATH before :{sandbox} (to mount at a directory named {sandbox}, write {host}:{sandbox}:ro)"
        ));
    }
    let sandbox = parse_sandbox_path(sandbox, spec)?;
    let absolute = host_path(host)?;
    let host = std::fs::canonicalize(&absolute)
        .map_err(|e| format!("cannot read host path {}: {e}", absolute.display()))?;
    Mount::new(host, sandbox, read_only)
        .map_err(|e| format!("invalid mount {spec:?}: {}", crate::error::core_message(&e)))
}

/// `KEY=VALUE`: a non-empty key without `=` or NUL, a value without NUL.
pub fn env(spec: &str) -> Result<(String, String), String> {
    let Some((k, v)) = spec.split_once('=') else {
        return Err(format!("malformed assignment {spec:?}: expected KEY=VALUE"));
    };
    if k.is_empty() {
        return Err(format!("malformed assignment {spec:?}: the name is empty"));
    }
    if k.contains('\0') || v.contains('\0') {
        return Err(format!("assignment {spec:?} contains a NUL byte"));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("512K"), Ok(512 << 10));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert_eq!(size("100"), Ok(100));
        assert_eq!(size("2MiB"), Ok(2 << 20));
        assert_eq!(size("1.5G"), Ok(3 << 29));
        assert_eq!(size("1T"), Ok(1 << 40));
        for bad in [
            "",
            "M",
            "-1",
            "64X",
            "1.2.3M",
            "abc",
            ".",
            "99999999999999999999",
            "20000000000T",
        ] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
        assert!(!size("64X").unwrap_err().contains('\n'));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "-1s", "10x", "1e3", "ms10", "1..2s"] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts_and_cpus() {
        assert_eq!(count("64"), Ok(64));
        assert!(count("-1").is_err());
        assert!(count("1.5").is_err());
        assert_eq!(cores("0.5"), Ok(0.5));
        assert!(cores("NaN").is_err());
        assert!(cores("inf").is_err());
        assert!(cores("x").is_err());
    }

    #[test]
    fn limits_are_checked_against_their_range() {
        assert_eq!(memory("64M"), Ok(64 << 20));
        assert!(memory("0")
            .unwrap_err()
            .contains("memory limit 0 bytes is out of range"));
        assert!(memory("12Q").unwrap_err().starts_with("invalid size"));
        assert_eq!(cpus("0.5"), Ok(0.5));
        assert!(cpus("0").is_err());
        assert!(cpus("abc")
            .unwrap_err()
            .starts_with("invalid number of cores"));
        assert_eq!(pids("64"), Ok(64));
        assert!(pids("0").is_err());
        assert_eq!(timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(timeout("0").unwrap_err().contains("greater than zero"));
        assert!(timeout("-1s").unwrap_err().starts_with("invalid duration"));
        assert_eq!(cpu_time("2s"), Ok(Duration::from_secs(2)));
        assert!(cpu_time("0s").is_err());
        assert_eq!(file_size("1M"), Ok(1 << 20));
        assert!(file_size("0").is_err());
        assert_eq!(open_files("64"), Ok(64));
        assert!(open_files("0").is_err());
        assert_eq!(output_limit("1K"), Ok(1024));
        assert!(output_limit("0").is_err());
    }

    #[test]
    fn copy_specs() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "x").unwrap();
        let spec = format!("{}:in/a.txt", f.display());
        assert_eq!(copy_in(&spec), Ok((f.clone(), "in/a.txt".to_string())));
        assert!(copy_in("nocolon").is_err());
        assert!(copy_in(":x").is_err());
        assert!(copy_in(&format!("{}:", f.display())).is_err());
        assert!(copy_in(&format!("{}:../x", f.display())).is_err());
        assert!(copy_in(&format!("{}:/abs", f.display())).is_err());
        assert!(copy_in("/definitely/not/here:x").is_err());
        let (s, h) = copy_out("out.txt:/tmp/o.txt").unwrap();
        assert_eq!(s, "out.txt");
        assert_eq!(h, PathBuf::from("/tmp/o.txt"));
        assert!(copy_out("out.txt").is_err());
        assert!(copy_out("../out:/tmp/x").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(isolation("auto"), Ok(IsolationMode::Auto));
        assert_eq!(isolation("full"), Ok(IsolationMode::Full));
        assert_eq!(isolation("none"), Ok(IsolationMode::None));
        let e = isolation("strong").unwrap_err();
        assert!(
            e.contains("\"strong\"") && e.contains("auto full none"),
            "{e}"
        );
        assert!(isolation("Full").is_err());
        assert_eq!(network("none"), Ok(NetworkMode::None));
        assert_eq!(network("host"), Ok(NetworkMode::Host));
        let e = network("bridge").unwrap_err();
        assert!(e.contains("none host"), "{e}");
    }

    #[test]
    fn mount_specs() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let d = dir.path().display();
        let m = mount(&format!("{d}:data")).unwrap();
        assert_eq!(m.host(), real);
        assert_eq!(m.sandbox().as_str(), "data");
        assert!(m.is_read_only());
        assert!(mount(&format!("{d}:data:ro")).unwrap().is_read_only());
        let m = mount(&format!("{d}:a/./b/:rw")).unwrap();
        assert!(!m.is_read_only());
        assert_eq!(m.sandbox().as_str(), "a/b");
        // A symlink is resolved: the recorded host path is its target.
        let link = real.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            mount(&format!("{}:x", link.display())).unwrap().host(),
            real
        );
        // A directory named like a mode needs the mode spelled out.
        assert_eq!(
            mount(&format!("{d}:ro:ro")).unwrap().sandbox().as_str(),
            "ro"
        );
        for (bad, needle) in [
            ("nocolon".to_string(), "malformed mount spec"),
            (format!("{d}"), "malformed mount spec"),
            (":data".to_string(), "both paths non-empty"),
            (format!("{d}:"), "both paths non-empty"),
            (format!("{d}::rw"), "both paths non-empty"),
            (format!("{d}:data:rx"), "unknown mount mode \"rx\""),
            (format!("{d}:data:ro:x"), "host paths with ':'"),
            (format!("{d}:ro"), "no SANDBOX_PATH before :ro"),
            (format!("{d}:rw"), "no SANDBOX_PATH before :rw"),
            (format!("{d}:../x"), "invalid sandbox path"),
            (format!("{d}:/abs"), "invalid sandbox path"),
            (format!("{d}:."), "workspace root"),
            (
                "/definitely/not/here:x".to_string(),
                "cannot read host path",
            ),
        ] {
            let e = mount(&bad).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn envs() {
        assert_eq!(env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(env("A="), Ok(("A".into(), "".into())));
        assert!(env("A").is_err());
        assert!(env("=x").is_err());
    }
}
