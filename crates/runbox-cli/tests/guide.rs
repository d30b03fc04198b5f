//! Keeps docs/writing-a-backend.md honest: every `rust,ignore` block must be
//! a verbatim excerpt (up to indentation) of a file that is compiled and
//! tested — the example backend `tests/guide/hostdir.rs` (run against the
//! conformance suite by `tests/guide_conformance.rs`), that conformance file,
//! or `src/lib.rs`. Plain `rust` blocks are doctests (see `src/lib.rs`). The
//! `toml` block must declare what the steps rely on. What the guide says of
//! the example beyond the conformance suite is checked in `guide/claims.rs`.

use std::path::Path;

// The example backend, as tests/guide_conformance.rs compiles it.
#[path = "guide/hostdir.rs"]
mod hostdir_backend;

#[path = "guide/claims.rs"]
mod claims;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    let p = Path::new(ROOT).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// (info string, body) of every fenced block.
fn blocks(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, Vec<&str>)> = None;
    for line in md.lines() {
        let t = line.trim_start();
        match (&mut cur, t.strip_prefix("```")) {
            (None, Some(info)) => cur = Some((info.trim().to_string(), Vec::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                if let Some((info, body)) = cur.take() {
                    out.push((info, body.join("\n")));
                }
            }
            (Some((_, body)), _) => body.push(line),
            (None, None) => {}
        }
    }
    assert!(cur.is_none(), "unterminated code block");
    out
}

fn stripped(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn is_excerpt(block: &str, file: &str) -> bool {
    let b = stripped(block);
    let f = stripped(file);
    !b.is_empty() && f.windows(b.len()).any(|w| w == b.as_slice())
}

#[test]
fn guide_code_blocks_are_checked() {
    let md = read("../../docs/writing-a-backend.md");
    let sources = [
        read("tests/guide/hostdir.rs"),
        read("tests/guide_conformance.rs"),
        read("src/lib.rs"),
    ];
    let all = blocks(&md);
    let mut excerpts = 0;
    let mut doctests = 0;
    let mut tomls = 0;
    for (info, body) in &all {
        match info.as_str() {
            "rust,ignore" => {
                assert!(
                    sources.iter().any(|s| is_excerpt(body, s)),
                    "this block of docs/writing-a-backend.md is not an excerpt of the checked example:\n{body}"
                );
                excerpts += 1;
            }
            "rust" => doctests += 1,
            "toml" => {
                for needle in [
                    "orchestrator-core.workspace = true",
                    "features = [\"conformance\"]",
                    "[[test]]",
                    "name = \"conformance\"",
                    "harness = false",
                    "async-trait",
                    "thiserror",
                ] {
                    assert!(body.contains(needle), "the toml block lacks {needle:?}");
                }
                tomls += 1;
            }
            "sh" => {}
            other => panic!("unchecked code block kind {other:?} in the guide:\n{body}"),
        }
    }
    assert!(excerpts >= 6, "only {excerpts} excerpts");
    assert!(doctests >= 1);
    assert_eq!(tomls, 1);
}

#[test]
fn readme_code_blocks_are_known_kinds() {
    let md = read("../../README.md");
    for (info, body) in blocks(&md) {
        assert!(
            matches!(info.as_str(), "sh" | "rust" | "text" | "json"),
            "README block {info:?} is neither shell nor a doctest:\n{body}"
        );
    }
}
