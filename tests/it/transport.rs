//! The connection limits, through the real binary: slow or silent clients
//! are cut off at their deadlines, the connection cap holds new connections
//! back without starving the open ones, the open-file limit is raised, and
//! oversized heads get the JSON envelope. Every socket has a read timeout,
//! so a limit that does not work fails the test instead of hanging it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::process::Server;
use serde_json::Value;

/// Deadlines of one second, so the tests are short.
const FAST: [(&str, &str); 3] = [
    ("AGENTKEY_HEADER_READ_TIMEOUT_SECONDS", "1"),
    ("AGENTKEY_BODY_TIMEOUT_SECONDS", "1"),
    ("AGENTKEY_IDLE_TIMEOUT_SECONDS", "1"),
];

/// Longer than any deadline above, shorter than a hung test.
const BOUND: Duration = Duration::from_secs(6);

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream
}

/// Reads until the server closes the connection; panics if it is still
/// open after `BOUND`. Answers what was read and how long it took.
fn read_until_closed(mut stream: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!(
                "the connection is still open after {:?} ({err}); received {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&received)
            ),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Sends one request on a new connection and answers the response's status
/// line and body.
fn request(server: &Server, head: &str, body: &str) -> (String, String) {
    let mut stream = connect(server);
    let request = format!(
        "{head}Host: agentkey\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (response, _) = read_until_closed(stream);
    let status = response.lines().next().unwrap_or("").to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn silent_half_sent_and_stalled_requests_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("a.db"), &FAST);
    let root = server.printed_root().expect("a generated root credential");

    let silent = connect(&server);
    let mut half_head = connect(&server);
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: agentkey\r\n")
        .unwrap();
    let mut stalled_body = connect(&server);
    stalled_body
        .write_all(
            format!(
                "POST /v1/organizations HTTP/1.1\r\nHost: agentkey\r\n\
                 Authorization: Bearer {root}\r\nContent-Type: application/json\r\n\
                 Content-Length: 60000\r\n\r\n{{\"na"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut idle = connect(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: agentkey\r\n\r\n")
        .unwrap();

    let (nothing, took) = read_until_closed(silent);
    assert_eq!(nothing, "", "a silent connection is closed without a word");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    let (nothing, _) = read_until_closed(half_head);
    assert_eq!(nothing, "");
    // The stalled body is answered (408, in the envelope), then closed.
    let (answer, _) = read_until_closed(stalled_body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["statusCode"], 408);
    // A keep-alive connection gets its answer, then is closed when idle.
    let (answer, _) = read_until_closed(idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let metrics = request(
        &server,
        &format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {root}\r\n"),
        "",
    )
    .1;
    for kind in ["header_read", "idle"] {
        let line = format!("agentkey_http_connection_timeouts_total{{kind=\"{kind}\"}}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    server.stop();
}

#[test]
fn at_the_connection_cap_new_connections_wait_and_open_ones_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = FAST.to_vec();
    env.push(("AGENTKEY_MAX_CONNECTIONS", "8"));
    let server = Server::start(&dir.path().join("a.db"), &env);

    // One connection in use, kept alive, and seven silent ones: the cap.
    let mut busy = connect(&server);
    let ask = b"GET /healthz HTTP/1.1\r\nHost: agentkey\r\n\r\n";
    busy.write_all(ask).unwrap();
    let mut buf = [0u8; 1024];
    assert!(busy.read(&mut buf).unwrap() > 0);
    let silent: Vec<TcpStream> = (0..7).map(|_| connect(&server)).collect();

    // The open connection is still served at the cap.
    busy.write_all(ask).unwrap();
    let n = busy.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // A new one waits until the deadlines free a place, then is answered.
    let started = Instant::now();
    let (status, body) = request(&server, "GET /v1/authorize HTTP/1.1\r\n", "");
    let took = started.elapsed();
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["statusCode"], 401);
    assert!(
        took >= Duration::from_millis(500) && took < BOUND,
        "answered after {took:?}: it waited for a free place"
    );
    for stream in silent {
        assert_eq!(read_until_closed(stream).0, "");
    }
    drop(busy);
    server.stop();
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if hard <= 256 {
        panic!("this test needs a hard open-file limit above 256 (soft {soft}, hard {hard})");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("a.db"), &[], |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            command.pre_exec(move || rlimit::Resource::NOFILE.set(256, hard));
        }
    });
    let log = server.stop();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["message"] == "open-file limit raised")
        .unwrap_or_else(|| panic!("no line about the open-file limit in {log}"));
    assert_eq!(line["was"], 256);
    assert_eq!(line["soft"], hard);
    assert_eq!(line["hard"], hard);
}

#[test]
fn too_many_or_too_large_headers_get_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("a.db"), &[]);
    let many: String = (0..80).map(|i| format!("X-Many-{i}: 1\r\n")).collect();
    let large = format!("X-Large: {}\r\n", "a".repeat(20 * 1024));
    for extra in [many, large] {
        let (status, body) = request(
            &server,
            &format!("GET /v1/authorize HTTP/1.1\r\n{extra}"),
            "",
        );
        assert!(status.starts_with("HTTP/1.1 431"), "{status}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["statusCode"], 431);
        assert!(body["requestId"].is_string());
    }
    server.stop();
}

#[test]
fn refused_verifications_are_summarized_not_logged_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    // Failures from one address are limited after a burst (tests/it/abuse.rs);
    // here every refusal must reach the log summary as a 401.
    let server = Server::start(
        &dir.path().join("a.db"),
        &[("AGENTKEY_AUTH_FAILURE_BURST", "1000")],
    );
    let root = server.printed_root().expect("a generated root credential");
    const REFUSED: usize = 60;
    for i in 0..REFUSED {
        let path = if i % 2 == 0 { "/v1" } else { "/iam/v1beta1" };
        let (status, _) = request(
            &server,
            &format!("GET {path}/authorize HTTP/1.1\r\nAuthorization: Bearer akt_nope{i}\r\n"),
            "",
        );
        assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    }
    // A verification that succeeds (an inactive answer is a 200).
    let (status, _) = request(
        &server,
        &format!(
            "POST /v1/introspect HTTP/1.1\r\nAuthorization: Bearer {root}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n"
        ),
        "token=akt_nope",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // A management request keeps its line.
    let (status, _) = request(
        &server,
        &format!("GET /v1/organizations HTTP/1.1\r\nAuthorization: Bearer {root}\r\n"),
        "",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (_, metrics) = request(
        &server,
        &format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {root}\r\n"),
        "",
    );
    for base in ["/v1", "/iam/v1beta1"] {
        let line = format!(
            "agentkey_http_requests_total{{method=\"GET\",route=\"{base}/authorize\",status=\"401\"}} {}",
            REFUSED / 2
        );
        assert!(metrics.contains(&line), "exact counts: {line}");
    }

    let log = server.stop();
    let events: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let lines_for = |route: &str| {
        events
            .iter()
            .filter(|e| e["message"] == "request" && e["route"] == route)
            .count()
    };
    assert_eq!(lines_for("/v1/authorize"), 0, "{log}");
    assert_eq!(lines_for("/iam/v1beta1/authorize"), 0);
    assert_eq!(
        lines_for("/v1/introspect"),
        0,
        "a success is logged at debug"
    );
    assert_eq!(lines_for("/v1/organizations"), 1);
    let summaries: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "refused verify requests (summary)")
        .collect();
    assert_eq!(summaries.len(), 1, "one line for the interval: {log}");
    assert_eq!(summaries[0]["refused"], REFUSED);
    assert_eq!(summaries[0]["counts"], format!("authorize 401: {REFUSED}"));
}
