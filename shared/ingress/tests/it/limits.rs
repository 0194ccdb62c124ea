//! Body limit (declared and streamed), the request timeout, the exact-limit boundary.

use std::net::SocketAddr;
use std::time::Duration;

use orderbus_ingress::IngressConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{hmac_app, hmac_verifier, json, post_signed, HMAC_HEADER};

const LIMIT: usize = 1024;

fn small_limit() -> IngressConfig {
    IngressConfig {
        body_limit: LIMIT,
        ..IngressConfig::default()
    }
}

/// Status line and body of the first response on `stream`, read within a bounded deadline.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<(u16, String)> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break;
                }
            }
        }
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| anyhow::anyhow!("no response within 10 s"))??;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

async fn connect(addr: SocketAddr, extra_headers: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /webhooks/acme HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{HMAC_HEADER}: sha256=00\r\n{extra_headers}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    Ok(stream)
}

#[tokio::test]
async fn declared_oversize_body_gets_413_at_once() -> anyhow::Result<()> {
    let app = hmac_app(small_limit()).await?;
    let body = vec![b' '; LIMIT + 1];
    let (status, reply) = json(post_signed(&app, &body, None).await?).await?;
    assert_eq!(status, 413);
    assert_eq!(reply["error"]["code"], "payload_too_large");
    let (verification, outcome, body_len, truncated, sha): (
        String,
        String,
        i64,
        bool,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT verification, outcome, body_len, body_truncated, body_sha256 FROM ingress_log",
    )
    .fetch_one(app.db.pool())
    .await?;
    assert_eq!(verification, "not_checked");
    assert_eq!(outcome, "rejected");
    assert_eq!(body_len, (LIMIT + 1) as i64);
    assert!(truncated);
    assert_eq!(sha, None);
    Ok(())
}

#[tokio::test]
async fn streamed_oversize_body_gets_413_before_it_ends() -> anyhow::Result<()> {
    let app = hmac_app(small_limit()).await?;
    let mut stream = connect(app.addr, "transfer-encoding: chunked\r\n").await?;
    // Four times the limit in 256-byte chunks, and never the terminating chunk: a server that
    // waited for the whole body would never answer.
    let chunk = vec![b'x'; 256];
    for _ in 0..(4 * LIMIT / chunk.len()) {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        stream.write_all(&chunk).await?;
        stream.write_all(b"\r\n").await?;
    }
    stream.flush().await?;
    let (status, body) = read_response(&mut stream).await?;
    assert_eq!(status, 413, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(reply["error"]["code"], "payload_too_large");
    let (body_len, stored): (i64, Vec<u8>) =
        sqlx::query_as("SELECT body_len, body FROM ingress_log")
            .fetch_one(app.db.pool())
            .await?;
    assert!(
        body_len > LIMIT as i64 && body_len <= (LIMIT + chunk.len()) as i64,
        "{body_len}"
    );
    assert!(stored.iter().all(|b| *b == b'x'));
    Ok(())
}

#[tokio::test]
async fn body_that_stops_arriving_gets_408_within_the_request_timeout() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig {
        request_timeout: Duration::from_millis(300),
        ..IngressConfig::default()
    })
    .await?;
    let mut stream = connect(app.addr, "content-length: 100\r\n").await?;
    stream.write_all(b"{\"order\":").await?;
    stream.flush().await?;
    let (status, body) = read_response(&mut stream).await?;
    assert_eq!(status, 408, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(reply["error"]["code"], "body_timeout");
    assert_eq!(app.effects().await?, 0);
    Ok(())
}

#[tokio::test]
async fn body_of_exactly_the_limit_is_accepted() -> anyhow::Result<()> {
    let app = hmac_app(small_limit()).await?;
    let mut body = br#"{"order":"OB-LIMIT"}"#.to_vec();
    body.resize(LIMIT, b' ');
    let resp = app
        .http
        .post(app.url("/webhooks/acme"))
        .header(HMAC_HEADER, hmac_verifier().sign(&body))
        .body(body)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.effects().await?, 1);
    Ok(())
}
