//! Our signatures against the official `pusher` crate, used as an oracle.

use std::collections::HashMap;

use inferpush_protocol::signature::{AppCredentials, RestRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const APP_ID: &str = "4242";
const KEY: &str = "oracle-key";
const SECRET: &str = "oracle-secret-with-some-length";

fn ours() -> AppCredentials {
    AppCredentials::new(APP_ID, KEY, SECRET)
}

fn auth_of(json: &str) -> HashMap<String, String> {
    serde_json::from_str(json).expect("pusher crate returns a JSON object")
}

#[test]
fn private_channel_auth_agrees_with_official_crate() {
    let official = pusher::PusherBuilder::new(APP_ID, KEY, SECRET).finalize();
    for (socket, channel) in [
        ("1234.1234", "private-inference.alice"),
        ("98765.4321", "private-encrypted-inference.bob"),
        ("1.2", "private-inference.user-with.dots@x"),
    ] {
        let theirs = auth_of(&official.authenticate_private_channel(channel, socket).unwrap());
        assert_eq!(theirs["auth"], ours().authorize_private(socket, channel).unwrap());
    }
}

#[test]
fn presence_channel_auth_agrees_with_official_crate() {
    let official = pusher::PusherBuilder::new(APP_ID, KEY, SECRET).finalize();
    let mut info = HashMap::new();
    info.insert("name", "Alice");
    let member = pusher::Member { user_id: "alice", user_info: Some(info) };
    let theirs =
        auth_of(&official.authenticate_presence_channel("presence-inference.alice", "5.6", &member).unwrap());
    let ours = ours().authorize_presence("5.6", "presence-inference.alice", &theirs["channel_data"]).unwrap();
    assert_eq!(theirs["auth"], ours);
}

/// Reads one HTTP/1.1 request from the official client and answers `{}`.
async fn capture_one_request(listener: TcpListener) -> (String, Vec<u8>) {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body_start) = loop {
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before sending a request");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8(buffer[..end].to_vec()).unwrap(), end + 4);
        }
    };
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    while buffer.len() < body_start + length {
        let n = socket.read(&mut chunk).await.unwrap();
        buffer.extend_from_slice(&chunk[..n]);
    }
    let response = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    socket.write_all(response.as_bytes()).await.unwrap();
    let request_line = head.lines().next().unwrap().to_owned();
    (request_line, buffer[body_start..body_start + length].to_vec())
}

#[tokio::test]
async fn rest_signature_agrees_with_official_crate_on_the_wire() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(capture_one_request(listener));
    let official = pusher::PusherBuilder::new(APP_ID, KEY, SECRET).host(&host).finalize();
    official
        .trigger("private-inference.alice", "inference.completed", serde_json::json!({"x": [1, 2]}))
        .await
        .unwrap();
    let (request_line, body) = server.await.unwrap();

    // "POST /apps/4242/events?auth_key=…&auth_signature=… HTTP/1.1"
    let target = request_line.split(' ').nth(1).unwrap();
    let (path, query) = target.split_once('?').unwrap();
    let params: HashMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
    let timestamp: u64 = params["auth_timestamp"].parse().unwrap();

    let signed = ours().sign_rest(&RestRequest { method: "POST", path, body: &body, timestamp, params: &[] });
    let ours: HashMap<&str, &str> = signed.split('&').filter_map(|kv| kv.split_once('=')).collect();
    assert_eq!(ours["body_md5"], params["body_md5"]);
    assert_eq!(ours["auth_signature"], params["auth_signature"]);

    let pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    inferpush_protocol::AppCredentials::new(APP_ID, KEY, SECRET)
        .verify_rest("POST", path, &pairs, &body)
        .expect("the official client's request verifies with our checker");
}
