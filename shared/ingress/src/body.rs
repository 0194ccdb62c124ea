//! Reading a request body under a size limit while it streams in.
//!
//! The limit is enforced per chunk, so a body larger than the limit is never buffered: reading
//! stops at the first chunk that crosses it (the connection is then closed by the server, the
//! rest is never read).

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// Why the body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is (or declares itself) larger than the limit.
    #[error("body larger than {limit} bytes (at least {seen} bytes)")]
    TooLarge {
        /// The configured limit.
        limit: usize,
        /// Bytes received before stopping, or the declared `Content-Length`.
        seen: u64,
        /// The bytes received before stopping (at most the limit plus one chunk).
        head: Bytes,
    },
    /// The client's stream failed (connection reset, bad chunked encoding).
    #[error("could not read the body: {source}")]
    Read {
        /// Bytes received before the failure.
        head: Bytes,
        /// The transport error.
        #[source]
        source: axum::Error,
    },
}

/// `Content-Length`, when present and numeric.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads `body` completely if it is at most `limit` bytes. A declared `Content-Length` above the
/// limit is refused before reading anything.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if let Some(declared) = declared_length(headers) {
        if declared > limit as u64 {
            return Err(BodyError::TooLarge {
                limit,
                seen: declared,
                head: Bytes::new(),
            });
        }
    }
    collect_limited(body.into_data_stream(), limit).await
}

/// Collects a stream of chunks, stopping at the first chunk that crosses `limit`.
pub async fn collect_limited<S>(mut chunks: S, limit: usize) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    let mut buf = BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > limit {
                    return Err(BodyError::TooLarge {
                        limit,
                        seen: buf.len() as u64,
                        head: buf.freeze(),
                    });
                }
            }
            Err(source) => {
                return Err(BodyError::Read {
                    head: buf.freeze(),
                    source,
                })
            }
        }
    }
    Ok(buf.freeze())
}
