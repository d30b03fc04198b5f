//! What happens around requests: a client that goes away, TTLs, slow
//! clients, cancellation, SIGTERM and kill -9; after each, nothing of the
//! sandbox is left.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use super::server::{eventually, processes_with, Server};

/// Sends a request on a socket and leaves it open (the caller drops it).
fn open_request(s: &Server, path: &str, headers: &str, body: &str) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    c
}

fn assert_disconnect_cancels(accept: &str, marker: &str) {
    let s = Server::start(&[]);
    let body = json!({"argv": ["sleep", marker]}).to_string();
    let c = open_request(&s, "/v1/runs", accept, &body);
    assert!(
        eventually(Duration::from_secs(10), || !processes_with(&format!(
            "sleep {marker}"
        ))
        .is_empty()),
        "the command never started"
    );
    let id = s.get("/v1/runs?limit=1").json()["runs"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(c);
    let gone = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || processes_with(&format!(
            "sleep {marker}"
        ))
        .is_empty()),
        "the command outlived its client"
    );
    assert!(
        eventually(Duration::from_secs(3), || s.workspaces().is_empty()),
        "{:?}",
        s.workspaces()
    );
    assert!(gone.elapsed() < Duration::from_secs(3));
    assert!(eventually(Duration::from_secs(3), || s
        .get(&format!("/v1/runs/{id}"))
        .json()["state"]
        == "cancelled"));
}

#[test]
fn a_client_that_disconnects_cancels_its_run() {
    assert_disconnect_cancels("", "1001.25");
}

#[test]
fn an_event_stream_client_that_disconnects_cancels_its_run() {
    assert_disconnect_cancels("Accept: text/event-stream\r\n", "1002.25");
}

#[test]
fn cancel_ends_a_running_run_and_its_sandbox() {
    let s = Server::start(&[]);
    let r = s.post(
        "/v1/runs?wait=false",
        &json!({"argv": ["sleep", "1003.25"]}),
    );
    let id = r.json()["execution_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(10), || !processes_with(
        "sleep 1003.25"
    )
    .is_empty()));
    let c = s.post(&format!("/v1/runs/{id}/cancel"), &json!({}));
    assert_eq!(c.status, 200);
    assert_eq!(c.json()["state"], "cancelled");
    assert!(processes_with("sleep 1003.25").is_empty());
    assert!(eventually(Duration::from_secs(3), || s
        .workspaces()
        .is_empty()));
    // A finished run stays as it ended.
    let done = s.post("/v1/runs", &json!({"argv": ["true"]})).json();
    let did = done["execution_id"].as_str().unwrap();
    assert_eq!(
        s.post(&format!("/v1/runs/{did}/cancel"), &json!({})).json()["state"],
        "completed"
    );
}

#[test]
fn sandboxes_past_their_ttl_are_reaped() {
    let s = Server::start(&[]);
    let short = s.sandbox(&json!({"ttl_s": 1}));
    let long = s.sandbox(&json!({"ttl_s": 120}));
    s.post(
        &format!("/v1/sandboxes/{short}/processes"),
        &json!({"argv": ["sleep", "1004.25"]}),
    );
    assert!(eventually(Duration::from_secs(5), || !processes_with(
        "sleep 1004.25"
    )
    .is_empty()));
    assert!(eventually(Duration::from_secs(5), || s
        .get(&format!("/v1/sandboxes/{short}"))
        .status
        == 404));
    assert!(processes_with("sleep 1004.25").is_empty());
    assert_eq!(s.workspaces().len(), 1, "{:?}", s.workspaces());
    assert_eq!(s.get(&format!("/v1/sandboxes/{long}")).status, 200);
    assert!(s
        .get("/metrics")
        .text()
        .contains("runbox_sandboxes_reaped_total 1"));
}

#[test]
fn a_slow_client_is_cut_off_while_others_are_served() {
    let s = Server::start(&["--header-timeout", "1s"]);
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.write_all(b"POST /v1/runs HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let start = Instant::now();
    // Others are served meanwhile.
    for _ in 0..3 {
        assert_eq!(s.get("/healthz").status, 200);
    }
    let _ = slow.write_all(b"X-Slow: 1\r\n");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the slow client was not cut off ({took:?})"
    );
    assert!(
        took >= Duration::from_millis(900),
        "cut off before its timeout ({took:?})"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn sigterm_lets_short_runs_finish_then_removes_everything() {
    let mut s = Server::start(&["--shutdown-grace", "2s"]);
    let sb = s.sandbox(&json!({}));
    s.post(
        &format!("/v1/sandboxes/{sb}/processes"),
        &json!({"argv": ["sleep", "1005.25"]}),
    );
    let long = s
        .post(
            "/v1/runs?wait=false",
            &json!({"argv": ["sleep", "1006.25"]}),
        )
        .json();
    let short = s
        .post(
            "/v1/runs?wait=false",
            &json!({"shell": "sleep 0.5; echo finished"}),
        )
        .json();
    assert!(eventually(Duration::from_secs(10), || !processes_with(
        "sleep 1006.25"
    )
    .is_empty()));
    let start = Instant::now();
    let status = s.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {}", s.log());
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "did not wait for the grace period"
    );
    assert!(processes_with("sleep 1005.25").is_empty());
    assert!(processes_with("sleep 1006.25").is_empty());
    assert!(s.workspaces().is_empty(), "{:?}", s.workspaces());
    assert!(std::fs::read_dir(s.dir.path().join("state/scratch"))
        .map(|d| d.count() == 0)
        .unwrap_or(true));
    // The records say how each ended.
    s.restart(&[]);
    let get = |v: &serde_json::Value| {
        s.get(&format!("/v1/runs/{}", v["execution_id"].as_str().unwrap()))
            .json()
    };
    assert_eq!(get(&short)["state"], "completed", "{}", get(&short));
    assert_eq!(get(&long)["state"], "cancelled");
    assert_eq!(s.get(&format!("/v1/sandboxes/{sb}")).status, 404);
}

#[test]
fn after_kill_9_the_next_start_reaps_what_was_left() {
    let mut s = Server::start(&[]);
    let sb = s.sandbox(&json!({}));
    s.post(
        &format!("/v1/sandboxes/{sb}/processes"),
        &json!({"argv": ["sleep", "1007.25"]}),
    );
    s.post(
        "/v1/runs?wait=false",
        &json!({"argv": ["sleep", "1008.25"]}),
    );
    assert!(eventually(Duration::from_secs(10), || !processes_with(
        "sleep 1008.25"
    )
    .is_empty()));
    s.crash();
    s.restart(&[]);
    // Recovery ran before the server said it listens.
    assert!(processes_with("sleep 1007.25").is_empty());
    assert!(processes_with("sleep 1008.25").is_empty());
    assert!(s.workspaces().is_empty(), "{:?}", s.workspaces());
    assert_eq!(s.get(&format!("/v1/sandboxes/{sb}")).status, 404);
    assert_eq!(
        s.delete(&format!("/v1/sandboxes/{sb}")).status,
        204,
        "its record is still the caller's"
    );
    let runs = s.get("/v1/runs").json();
    let state = runs["runs"][0]["state"].as_str().unwrap().to_string();
    assert!(state == "failed" || state == "cancelled", "{runs}");
}

#[test]
fn sigterm_gives_sandbox_execs_their_grace_too() {
    let mut s = Server::start(&["--shutdown-grace", "5s"]);
    let sb = s.sandbox(&json!({}));
    let addr = s.addr;
    let path = format!("/v1/sandboxes/{sb}/exec");
    let exec = std::thread::spawn(move || {
        super::http::request(
            addr,
            "POST",
            &path,
            &[],
            json!({"shell": "sleep 1.5; echo done"})
                .to_string()
                .as_bytes(),
        )
    });
    assert!(eventually(Duration::from_secs(10), || !processes_with(
        "sleep 1.5"
    )
    .is_empty()));
    let status = s.terminate(Duration::from_secs(30));
    assert!(status.success());
    let r = exec.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stdout"], "done\n", "{}", r.text());
    assert!(s.workspaces().is_empty());
}
