//! Cases: copying files and directories in and out, byte-exact.

use std::path::Path;

use crate::error::Error;
use crate::orchestrator::Orchestrator;

use crate::conformance::support::*;

/// A binary file and an empty file go in and out byte-exact.
pub async fn copy_file_roundtrip_binary_and_empty(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let mut bin: Vec<u8> = (0..=255u8).collect();
    bin.extend(pattern(70_000, 7));
    std::fs::write(host.path().join("bin"), &bin).expect("write");
    std::fs::write(host.path().join("empty"), b"").expect("write");
    o.copy_to(&id, &host.path().join("bin"), &sandbox("in/data.bin"))
        .await
        .expect("copy_to bin");
    o.copy_to(&id, &host.path().join("empty"), &sandbox("empty"))
        .await
        .expect("copy_to empty");
    let out = sh(o, &id, "wc -c < in/data.bin; wc -c < empty").await;
    expect_exit(&out, 0);
    let sizes: Vec<String> = out
        .stdout_str()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(sizes, vec![bin.len().to_string(), "0".to_string()]);
    o.copy_from(&id, &sandbox("in/data.bin"), &host.path().join("bin.out"))
        .await
        .expect("copy_from bin");
    o.copy_from(&id, &sandbox("empty"), &host.path().join("empty.out"))
        .await
        .expect("copy_from empty");
    assert_eq!(
        std::fs::read(host.path().join("bin.out")).expect("read"),
        bin
    );
    assert_eq!(
        std::fs::read(host.path().join("empty.out")).expect("read"),
        b""
    );
    // Overwriting an existing file replaces it.
    std::fs::write(host.path().join("bin"), b"short").expect("write");
    o.copy_to(&id, &host.path().join("bin"), &sandbox("in/data.bin"))
        .await
        .expect("copy_to overwrite");
    let out = sh(o, &id, "cat in/data.bin").await;
    assert_eq!(out.stdout, b"short");
    done(o, &id).await;
}

/// A multi-megabyte file survives the round trip.
pub async fn copy_large_file(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let data = pattern(8 << 20, 99);
    std::fs::write(host.path().join("big"), &data).expect("write");
    o.copy_to(&id, &host.path().join("big"), &sandbox("big"))
        .await
        .expect("copy_to");
    o.copy_from(&id, &sandbox("big"), &host.path().join("big.out"))
        .await
        .expect("copy_from");
    assert!(std::fs::read(host.path().join("big.out")).expect("read") == data);
    done(o, &id).await;
}

fn snapshot_tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(base).expect("prefix").display().to_string();
            if p.is_dir() {
                out.push((rel, None));
                walk(base, &p, out);
            } else {
                out.push((rel, Some(std::fs::read(&p).expect("read"))));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// A nested directory with binary, empty files and an empty directory goes
/// in and comes out identical.
pub async fn copy_nested_directory(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let src = host.path().join("src");
    std::fs::create_dir_all(src.join("a/b/c")).expect("mkdir");
    std::fs::create_dir_all(src.join("emptydir")).expect("mkdir");
    std::fs::write(src.join("top.txt"), b"top\n").expect("write");
    std::fs::write(src.join("a/bin"), pattern(4096, 3)).expect("write");
    std::fs::write(src.join("a/b/empty"), b"").expect("write");
    std::fs::write(src.join("a/b/c/deep.txt"), b"deep").expect("write");
    o.copy_to(&id, &src, &sandbox("tree"))
        .await
        .expect("copy_to dir");
    let out = sh(
        o,
        &id,
        "cat tree/a/b/c/deep.txt; echo; ls tree/emptydir | wc -l",
    )
    .await;
    expect_exit(&out, 0);
    assert_eq!(
        out.stdout_str().split_whitespace().collect::<Vec<_>>(),
        ["deep", "0"]
    );
    let dst = host.path().join("dst");
    o.copy_from(&id, &sandbox("tree"), &dst)
        .await
        .expect("copy_from dir");
    assert_eq!(snapshot_tree(&src), snapshot_tree(&dst));
    done(o, &id).await;
}

/// Copying something that does not exist is NotFound and writes nothing.
pub async fn copy_missing_source_is_not_found(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    expect_not_found(
        o.copy_from(&id, &sandbox("no/such/file"), &host.path().join("x"))
            .await,
        "copy_from missing",
    );
    assert!(!host.path().join("x").exists());
    expect_not_found(
        o.copy_to(&id, &host.path().join("missing"), &sandbox("x"))
            .await,
        "copy_to missing host path",
    );
    let out = sh(o, &id, "ls -A | wc -l").await;
    assert_eq!(out.stdout_str().trim(), "0", "{}", describe(&out));
    done(o, &id).await;
}

/// copy_from into an existing host directory lands inside it (like `cp`);
/// an existing host directory is never replaced or merged.
pub async fn copy_out_never_replaces_host_directories(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let keep = host.path().join("keep");
    std::fs::create_dir_all(keep.join("t")).expect("mkdir");
    std::fs::write(keep.join("precious"), b"precious").expect("write");
    std::fs::write(keep.join("t/old"), b"old").expect("write");
    expect_exit(
        &sh(o, &id, "mkdir t && echo new > t/new && echo f > f").await,
        0,
    );
    // A file into an existing directory: under its own name.
    o.copy_from(&id, &sandbox("f"), &keep)
        .await
        .expect("copy_from into a directory");
    assert_eq!(std::fs::read(keep.join("f")).expect("read"), b"f\n");
    // A directory whose name exists there as a directory: refused.
    match o.copy_from(&id, &sandbox("t"), &keep).await {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("copy_from over an existing directory: {other:?}"),
    }
    match o.copy_from(&id, &sandbox("f"), &keep.join("t")).await {
        Ok(()) => assert_eq!(std::fs::read(keep.join("t/f")).expect("read"), b"f\n"),
        Err(e) => panic!("copy_from into an existing subdirectory: {e}"),
    }
    // Nothing that was there is lost.
    assert_eq!(
        std::fs::read(keep.join("precious")).expect("read"),
        b"precious"
    );
    assert_eq!(std::fs::read(keep.join("t/old")).expect("read"), b"old");
    assert!(!keep.join("t/new").exists(), "directories were merged");
    done(o, &id).await;
}
