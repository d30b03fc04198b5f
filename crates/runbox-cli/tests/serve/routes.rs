//! Every route doing what it says: runs (waited, accepted, streamed),
//! sandboxes with their files, execs and processes, and the service routes.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::server::{eventually, Server};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

#[test]
fn a_run_answers_the_cli_result_object_with_its_files() {
    let s = Server::start(&[]);
    let r = s.post(
        "/v1/runs",
        &json!({
            "shell": "cat in.txt; cat; echo \"$GREETING\" >&2; pwd; mkdir -p out/d; echo x > out/d/f; echo r > result.txt; exit 3",
            "env": {"GREETING": "hello"},
            "stdin": {"text": "from stdin\n"},
            "files": [{"path": "in.txt", "text": "file in\n"}, {"path": "bin.dat", "base64": b64("\u{1}\u{2}")}],
            "collect": ["result.txt", "out", "missing.txt"],
            "limits": {"memory_bytes": 268435456u64, "pids": 64, "timeout_ms": 20000}
        }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "exited", "{j}");
    assert_eq!(j["exit_code"], 3);
    assert!(j["signal"].is_null());
    let out = j["stdout"].as_str().unwrap();
    assert!(out.starts_with("file in\nfrom stdin\n"), "{out}");
    assert_eq!(j["stderr"], "hello\n");
    for k in [
        "stdout_truncated",
        "stderr_truncated",
        "wall_time_ms",
        "cpu_time_ms",
        "peak_memory_bytes",
        "backend",
        "workspace_id",
        "execution_id",
        "limits",
        "isolation",
    ] {
        assert!(j.get(k).is_some(), "{k} missing: {j}");
    }
    assert_eq!(j["backend"], "native");
    assert_eq!(j["limits"]["memory"]["requested"], 268435456u64);
    assert_eq!(j["limits"]["timeout"]["requested"], 20000);
    assert!(j["isolation"]["level"].is_string());
    let files = &j["files"];
    assert_eq!(unb64(&files["result.txt"]["base64"]), b"r\n");
    let tar = unb64(&files["out"]["base64"]);
    let mut a = tar::Archive::new(&tar[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("d/f")), "{names:?}");
    assert!(files["missing.txt"]["error"]["code"].is_string(), "{files}");

    // Its record: completed, found by id and first in the list.
    let id = j["execution_id"].as_str().unwrap();
    let g = s.get(&format!("/v1/runs/{id}"));
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["state"], "completed");
    assert_eq!(g.json()["result"]["exit_code"], 3);
    let second = s.post(
        "/v1/runs",
        &json!({"argv": ["true"], "output_encoding": "base64"}),
    );
    assert_eq!(second.status, 200);
    let l = s.get("/v1/runs?limit=1").json();
    assert_eq!(l["runs"].as_array().unwrap().len(), 1);
    assert_eq!(l["runs"][0]["execution_id"], second.json()["execution_id"]);
    let l = s.get("/v1/runs").json();
    assert_eq!(l["runs"][1]["execution_id"], id);
    // Base64 output.
    let e = s.post(
        "/v1/runs",
        &json!({"argv": ["printf", "\\377ok"], "output_encoding": "base64"}),
    );
    assert_eq!(unb64(&e.json()["stdout"]), b"\xffok");
    assert!(s.workspaces().is_empty(), "{:?}", s.workspaces());
}

#[test]
fn an_accepted_run_is_polled_to_its_result() {
    let s = Server::start(&[]);
    let r = s.post(
        "/v1/runs?wait=false",
        &json!({"shell": "sleep 0.5; echo done"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["execution_id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/runs/{id}").as_str())
    );
    assert!(["queued", "running"].contains(&r.json()["state"].as_str().unwrap()));
    let mut last = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(20), || {
            last = s.get(&format!("/v1/runs/{id}")).json();
            last["state"] == "completed"
        }),
        "{last}"
    );
    assert_eq!(last["result"]["stdout"], "done\n");
}

#[test]
fn events_carry_the_output_then_the_result() {
    let s = Server::start(&[]);
    let r = s.send(
        "POST",
        "/v1/runs",
        &[("Accept", "text/event-stream")],
        json!({"shell": "echo one; sleep 0.2; echo two >&2"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text();
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let name = block.lines().find_map(|l| l.strip_prefix("event: "));
        let data = block.lines().find_map(|l| l.strip_prefix("data: "));
        if let (Some(n), Some(d)) = (name, data) {
            events.push((
                n.to_string(),
                serde_json::from_str::<serde_json::Value>(d).unwrap(),
            ));
        }
    }
    let outputs: Vec<_> = events.iter().filter(|(n, _)| n == "output").collect();
    assert!(
        outputs
            .iter()
            .any(|(_, d)| d["stream"] == "stdout" && unb64(&d["base64"]) == b"one\n"),
        "{text}"
    );
    assert!(
        outputs
            .iter()
            .any(|(_, d)| d["stream"] == "stderr" && unb64(&d["base64"]) == b"two\n"),
        "{text}"
    );
    let (last, result) = events.last().unwrap();
    assert_eq!(last, "result", "{text}");
    assert_eq!(result["exit_code"], 0);
    assert_eq!(result["stdout"], "one\n");
}

#[test]
fn a_sandbox_from_create_to_delete() {
    let s = Server::start(&[]);
    let r = s.post(
        "/v1/sandboxes",
        &json!({"limits": {"pids": 32}, "ttl_s": 120}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let sb = r.json();
    let id = sb["id"].as_str().unwrap().to_string();
    assert_eq!(sb["backend"], "native");
    assert!(sb["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(sb["limits"]["pids"]["requested"], 32);
    assert!(sb["isolation"]["level"].is_string());
    assert_eq!(
        s.get("/v1/sandboxes").json()["sandboxes"][0]["id"],
        id.as_str()
    );
    assert_eq!(
        s.get(&format!("/v1/sandboxes/{id}")).json()["id"],
        id.as_str()
    );
    let t = s.post(&format!("/v1/sandboxes/{id}/ttl"), &json!({"ttl_s": 600}));
    assert_eq!(t.status, 200);
    assert!(t.json()["expires_at"].as_str().unwrap() > sb["expires_at"].as_str().unwrap());

    // Files: one file, a tar as a directory, read back.
    let put = s.send(
        "PUT",
        &format!("/v1/sandboxes/{id}/files/src/a.txt"),
        &[],
        b"alpha",
    );
    assert_eq!(put.status, 204, "{}", put.text());
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "sub/b.txt", &b"beta"[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let put = s.send(
        "PUT",
        &format!("/v1/sandboxes/{id}/files/tree"),
        &[("Content-Type", "application/x-tar")],
        &tar,
    );
    assert_eq!(put.status, 204, "{}", put.text());
    let got = s.get(&format!("/v1/sandboxes/{id}/files/src/a.txt"));
    assert_eq!((got.status, got.body.as_slice()), (200, &b"alpha"[..]));
    let dir = s.get(&format!("/v1/sandboxes/{id}/files/tree"));
    assert_eq!(dir.header("content-type"), Some("application/x-tar"));
    let mut a = tar::Archive::new(&dir.body[..]);
    let mut found = false;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("sub/b.txt") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            found = s == "beta";
        }
    }
    assert!(found);
    s.get(&format!("/v1/sandboxes/{id}/files/nope"))
        .assert_problem(404, "not_found");

    // Exec sees the files, keeps state between calls.
    let e = s.post(
        &format!("/v1/sandboxes/{id}/exec"),
        &json!({"shell": "cat src/a.txt tree/sub/b.txt; echo made > m", "timeout_ms": 10000}),
    );
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["stdout"], "alphabeta");
    let e = s.post(
        &format!("/v1/sandboxes/{id}/exec"),
        &json!({"argv": ["cat", "m"], "stdin": {"text": "x"}}),
    );
    assert_eq!(e.json()["stdout"], "made\n");
    let t = s.post(
        &format!("/v1/sandboxes/{id}/exec"),
        &json!({"argv": ["sleep", "5"], "timeout_ms": 200}),
    );
    assert_eq!(t.json()["status"], "timed_out", "{}", t.text());

    // Background processes.
    let p = s.post(
        &format!("/v1/sandboxes/{id}/processes"),
        &json!({"shell": "echo started; sleep 60"}),
    );
    assert_eq!(p.status, 201, "{}", p.text());
    let pid = p.json()["pid"].as_str().unwrap().to_string();
    let base = format!("/v1/sandboxes/{id}/processes/{pid}");
    assert!(eventually(Duration::from_secs(5), || s.get(&base).json()
        ["stdout"]
        == "started\n"));
    assert_eq!(s.get(&base).json()["running"], true);
    let w = s.post(&format!("{base}/wait"), &json!({"timeout_ms": 100}));
    assert_eq!((w.status, w.json()["running"].clone()), (202, json!(true)));
    assert_eq!(s.delete(&base).status, 204);
    let w = s.post(&format!("{base}/wait"), &json!({"timeout_ms": 5000}));
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.json()["status"], "signaled");
    let q = s.post(
        &format!("/v1/sandboxes/{id}/processes"),
        &json!({"argv": ["sh", "-c", "exit 4"]}),
    );
    let qb = format!(
        "/v1/sandboxes/{id}/processes/{}",
        q.json()["pid"].as_str().unwrap()
    );
    let w = s.post(&format!("{qb}/wait"), &json!({"timeout_ms": 5000}));
    assert_eq!(w.json()["exit_code"], 4, "{}", w.text());
    assert_eq!(
        w.json()["execution_id"],
        id.as_str(),
        "the sandbox's result object"
    );
    assert_eq!(w.json()["backend"], "native");
    assert_eq!(s.get(&qb).json()["result"]["exit_code"], 4);
    s.get(&format!("/v1/sandboxes/{id}/processes/p999"))
        .assert_problem(404, "not_found");

    // Delete: gone, idempotent, nothing left.
    assert_eq!(s.delete(&format!("/v1/sandboxes/{id}")).status, 204);
    assert_eq!(s.delete(&format!("/v1/sandboxes/{id}")).status, 204);
    s.get(&format!("/v1/sandboxes/{id}"))
        .assert_problem(404, "not_found");
    assert!(s.get("/v1/sandboxes").json()["sandboxes"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(s.workspaces().is_empty(), "{:?}", s.workspaces());
}

#[test]
fn the_service_routes() {
    let s = Server::start(&[]);
    assert_eq!(s.get("/healthz").json(), json!({"status": "ok"}));
    assert_eq!(s.get("/readyz").status, 200);
    let info = s.get("/v1/info").json();
    assert_eq!(info["default_backend"], "native");
    assert!(info["version"].is_string());
    let names: Vec<&str> = info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"native") && names.contains(&"docker"),
        "{names:?}"
    );
    let native = info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "native")
        .unwrap();
    assert_eq!(native["available"], true);
    assert!(native["capabilities"]["limits"].is_array());
    assert!(info["caps"]["timeout_ms"].is_u64());
    s.post("/v1/runs", &json!({"argv": ["true"]}));
    let m = s.get("/metrics");
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    assert!(
        text.contains("runbox_runs_total{status=\"exited\"} 1"),
        "{text}"
    );
    for name in [
        "runbox_run_duration_seconds_bucket",
        "runbox_runs_in_flight",
        "runbox_queue_depth",
        "runbox_sandboxes_live",
        "runbox_pool_size",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("runbox_"), "{line}");
    }
    let doc = s.get("/openapi.json").json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for p in [
        "/v1/runs",
        "/v1/runs/{id}",
        "/v1/runs/{id}/cancel",
        "/v1/sandboxes",
        "/v1/sandboxes/{id}/exec",
        "/v1/sandboxes/{id}/files/{path}",
        "/v1/sandboxes/{id}/processes/{pid}/wait",
        "/healthz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
}
