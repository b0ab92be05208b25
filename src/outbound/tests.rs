//! The client against tiny loopback servers started per test, each bounded by timeouts.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tokio::net::TcpListener;

use super::test_server::{Answer, Server};
use super::*;

const LIMITS: Limits = Limits {
    connect_timeout: Duration::from_secs(2),
    total_timeout: Duration::from_secs(5),
    max_body_bytes: 64,
};
/// Bounds every test, whatever the client does.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

fn ok_hello() -> Answer {
    Answer::Raw(Bytes::from_static(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\nhello",
    ))
}

fn get() -> Request {
    Request::new(Method::GET, "/thing", Idempotency::Idempotent)
}

async fn send(client: &Client, peer: &Peer, request: Request) -> Result<Response, Error> {
    tokio::time::timeout(TEST_DEADLINE, client.send(peer, &LIMITS, request))
        .await
        .expect("the client kept within its own deadline")
}

#[tokio::test]
async fn a_whole_answer_with_status_headers_and_body() {
    let server = Server::start(|_, _| ok_hello()).await;
    let request = Request::new(Method::POST, "/p?q=1", Idempotency::NotIdempotent)
        .header("X-Custom", "v")
        .body(Bytes::from_static(b"{}"));
    let resp = send(&Client::new(), &server.peer(), request).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers["x-test"], "yes");
    assert_eq!(resp.body, "hello");
    let head = &server.heads()[0];
    assert!(head.starts_with("post /p?q=1 http/1.1\r\n"), "{head}");
    for line in [
        format!("host: {}", server.addr),
        "x-custom: v".into(),
        "content-length: 2".into(),
        "connection: close".into(),
    ] {
        assert!(head.contains(&format!("\r\n{line}\r\n")), "{line}: {head}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_too_large_with_the_head_and_the_first_bytes() {
    let server = Server::start(|_, _| Answer::status(500, &"0123456789".repeat(10))).await;
    let e = send(&Client::new(), &server.peer(), get())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    let partial = e.partial().unwrap();
    assert_eq!(partial.status, 500);
    assert_eq!(partial.body.len(), LIMITS.max_body_bytes);
    assert!(partial.body.starts_with(b"0123456789"));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_at_the_deadline() {
    let server = Server::start(|_, _| Answer::Hang).await;
    let limits = Limits {
        total_timeout: Duration::from_millis(300),
        ..LIMITS
    };
    let started = Instant::now();
    let e = Client::new()
        .send(&server.peer(), &limits, get())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_refused_port_is_connect() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let peer = Peer::new(addr, false, "127.0.0.1", addr.to_string());
    let e = send(&Client::new(), &peer, get()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
    assert!(!e.reused());
}

#[tokio::test]
async fn garbage_instead_of_http_is_malformed() {
    let server =
        Server::start(|_, _| Answer::Raw(Bytes::from_static(b"this is not http at all\r\n\r\n")))
            .await;
    let e = send(&Client::new(), &server.peer(), get())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed, "{e}");
}

#[tokio::test]
async fn an_invalid_header_value_fails_before_connecting() {
    let server = Server::start(|_, _| ok_hello()).await;
    let request = get().header("X-Bad", "line\r\nbreak");
    let e = send(&Client::new(), &server.peer(), request)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    assert_eq!(server.connections(), 0);
}

/// The first connection answers its first request, then reads the second and closes without
/// answering (a peer that dropped a pooled connection just as it was reused); any later
/// connection answers.
fn drops_the_second_request(conn: usize, n: usize) -> Answer {
    match (conn, n) {
        (0, 0) => ok_hello(),
        (0, _) => Answer::Close,
        _ => Answer::status(200, "second"),
    }
}

/// A pooled client whose one connection to `server` has answered once and sits in the pool.
async fn warmed_up(server: &Server) -> (Client, Peer) {
    let (client, peer) = (Client::new(), server.peer().pooled(Duration::from_secs(4)));
    let first = send(&client, &peer, get()).await.unwrap();
    assert_eq!(first.body, "hello");
    (client, peer)
}

#[tokio::test]
async fn an_idempotent_request_failing_on_a_reused_connection_is_sent_once_more_on_a_new_one() {
    let server = Server::start(drops_the_second_request).await;
    let (client, peer) = warmed_up(&server).await;
    let resp = send(&client, &peer, get()).await.unwrap();
    assert_eq!(resp.body, "second");
    assert_eq!(server.connections(), 2);
    assert_eq!(server.heads().len(), 3, "warm-up, dropped, retried");
    assert!(
        !server.heads()[0].contains("connection: close"),
        "a pooled peer keeps its connection"
    );
}

#[tokio::test]
async fn a_non_idempotent_request_failing_on_a_reused_connection_is_not_sent_again() {
    let server = Server::start(drops_the_second_request).await;
    let (client, peer) = warmed_up(&server).await;
    let post = Request::new(Method::POST, "/thing", Idempotency::NotIdempotent)
        .body(Bytes::from_static(b"{}"));
    let e = send(&client, &peer, post).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(e.reused());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.connections(), 1);
    assert_eq!(server.heads().len(), 2, "warm-up and the one POST");
}

#[tokio::test]
async fn a_pooled_connection_serves_the_next_request() {
    let server = Server::start(|_, _| ok_hello()).await;
    let (client, peer) = warmed_up(&server).await;
    send(&client, &peer, get()).await.unwrap();
    assert_eq!(server.connections(), 1);
}
