//! An HTTP/1.1 client over RA-TLS. A connection exists only after the
//! enclave's certificate verified and its evidence satisfied the caller's
//! policy; every request on it goes to that attested enclave.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloister_attestation::evidence::Appraisal;
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::{AttestationDocument, AttestedPeer, RaTlsError, RaTlsVerifier};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use time::OffsetDateTime;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read (answers are text; this bounds a hostile peer).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Why a request did not produce an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint could not be reached.
    #[error("cannot connect to {endpoint}: {detail}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// The enclave's attestation was refused: nothing was sent to it.
    #[error("{0}")]
    Attestation(RaTlsError),
    /// TLS failed for another reason.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The enclave answered with an error.
    #[error("enclave refused the request ({status}): {message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The error code (`error.code`), e.g. a policy module's reason code.
        code: String,
        /// The error message.
        message: String,
        /// Cloister's account of the refusal (the response's `cloister`
        /// object: the policy gates' decisions), if it gave one.
        cloister: Value,
    },
    /// The answer is not what the API promises.
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether this is an attestation or freshness refusal.
    pub fn is_attestation(&self) -> bool {
        matches!(self, Self::Attestation(_))
    }
}

/// An open, attested connection.
pub struct AttestedConnection {
    sender: SendRequest<Full<Bytes>>,
    peer: AttestedPeer,
    policy: AppraisalPolicy,
}

impl std::fmt::Debug for AttestedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedConnection")
            .field("peer", &self.peer)
            .finish()
    }
}

/// A chat answer.
#[derive(Debug, Clone)]
pub struct ChatAnswer {
    /// The assistant's text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// The whole response object.
    pub raw: Value,
}

impl AttestedConnection {
    /// Connects to `endpoint` (HOST:PORT) and attests it against `policy`.
    pub async fn connect(endpoint: &str, policy: AppraisalPolicy) -> Result<Self, ClientError> {
        let connect_error = |detail: String| ClientError::Connect {
            endpoint: endpoint.to_owned(),
            detail,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(endpoint))
            .await
            .map_err(|_| connect_error(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| connect_error(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let verifier = Arc::new(RaTlsVerifier::new(policy.clone()));
        let config = verifier.client_config().map_err(ClientError::Attestation)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("cloister-enclave")
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let handshake = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Tls(format!("no handshake within {CONNECT_TIMEOUT:?}")))?;
        let tls = match (handshake, verifier.outcome()) {
            (Ok(tls), Some(Ok(_))) => tls,
            (_, Some(Err(refusal))) => return Err(ClientError::Attestation(refusal)),
            (Err(e), _) => return Err(ClientError::Tls(e.to_string())),
            (Ok(_), None) => {
                return Err(ClientError::Attestation(RaTlsError::Handshake(
                    "no certificate was verified".into(),
                )))
            }
        };
        let peer = match verifier.outcome() {
            Some(Ok(peer)) => peer,
            _ => return Err(ClientError::Tls("verifier lost its outcome".into())),
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
        Ok(Self {
            sender,
            peer,
            policy,
        })
    }

    /// The attested enclave.
    pub fn peer(&self) -> &AttestedPeer {
        &self.peer
    }

    /// Sends one request; returns status and body.
    pub async fn request(
        &mut self,
        method: hyper::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self.send(method, path, token, body).await?;
        let status = response.status();
        Ok((status, read_body(response.into_body()).await?))
    }

    /// Sends one request; returns the response with its body unread.
    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "cloister-enclave");
        if let Some(token) = token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = match body {
            Some(v) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(payload))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    async fn json(
        &mut self,
        method: hyper::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, bytes) = self.request(method, path, token, body).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("{status}: body is not JSON: {e}")))?;
        if !status.is_success() {
            return Err(api_error(status, &value));
        }
        Ok(value)
    }

    /// The enclave's `/healthz`: TEE, engine, unsealed bundles, policy bundle.
    pub async fn healthz(&mut self) -> Result<Value, ClientError> {
        self.json(hyper::Method::GET, "/healthz", None, None).await
    }

    /// Fetches fresh evidence for `nonce` (not yet verified).
    pub async fn attestation_document(
        &mut self,
        nonce: &[u8],
    ) -> Result<AttestationDocument, ClientError> {
        let path = format!("/v1/attestation?nonce={}", hex::encode(nonce));
        let value = self.json(hyper::Method::GET, &path, None, None).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Proves the enclave is live now: a random nonce, fresh evidence bound
    /// to it and to this connection's TLS key, verified against the policy.
    pub async fn check_freshness(&mut self) -> Result<Appraisal, ClientError> {
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| ClientError::Protocol("no randomness for a nonce".into()))?;
        let document = self.attestation_document(&nonce).await?;
        document
            .verify_fresh(&self.peer, &nonce, &self.policy, OffsetDateTime::now_utc())
            .map_err(ClientError::Attestation)
    }

    /// Asks one question (non-streaming chat completion).
    pub async fn chat(
        &mut self,
        token: &str,
        prompt: &str,
        max_tokens: Option<u32>,
    ) -> Result<ChatAnswer, ClientError> {
        let mut body = json!({ "messages": [{ "role": "user", "content": prompt }] });
        if let Some(n) = max_tokens {
            if let Some(map) = body.as_object_mut() {
                map.insert("max_tokens".into(), json!(n));
            }
        }
        self.chat_body(token, &body).await
    }

    /// Sends a whole chat completion request body (non-streaming), e.g.
    /// with a `cloister` object naming the task and patient.
    pub async fn chat_body(
        &mut self,
        token: &str,
        body: &Value,
    ) -> Result<ChatAnswer, ClientError> {
        let raw = self
            .json(
                hyper::Method::POST,
                "/v1/chat/completions",
                Some(token),
                Some(body),
            )
            .await?;
        let text = raw
            .pointer("/choices/0/message/content")
            .unwrap_or(&Value::Null)
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no choices[0].message.content".into()))?
            .to_owned();
        let model = raw
            .pointer("/model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(ChatAnswer { text, model, raw })
    }

    /// Asks one question with `stream: true`, handing each piece of text to
    /// `on_text` as the server-sent events arrive.
    pub async fn chat_stream(
        &mut self,
        token: &str,
        prompt: &str,
        on_text: impl FnMut(&str),
    ) -> Result<ChatAnswer, ClientError> {
        let request = json!({ "messages": [{ "role": "user", "content": prompt }] });
        self.chat_stream_body(token, &request, on_text).await
    }

    /// As [`chat_stream`](Self::chat_stream), for a whole request body
    /// (`stream` is set to true). The final event's `cloister` object is
    /// returned in `raw`.
    pub async fn chat_stream_body(
        &mut self,
        token: &str,
        body: &Value,
        mut on_text: impl FnMut(&str),
    ) -> Result<ChatAnswer, ClientError> {
        let mut request = body.clone();
        if let Some(map) = request.as_object_mut() {
            map.insert("stream".into(), json!(true));
        }
        let response = self
            .send(
                hyper::Method::POST,
                "/v1/chat/completions",
                Some(token),
                Some(&request),
            )
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let value: Value =
                serde_json::from_slice(&read_body(body).await?).unwrap_or(Value::Null);
            return Err(api_error(status, &value));
        }
        let mut pending = Vec::new();
        let mut text = String::new();
        let mut model = String::new();
        let mut done = false;
        let mut cloister = Value::Null;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            if pending.len() > MAX_RESPONSE {
                return Err(ClientError::Protocol("event stream too large".into()));
            }
            while let Some(end) = find(&pending, b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                let line = String::from_utf8_lossy(&event);
                let Some(payload) = line.trim().strip_prefix("data: ") else {
                    continue;
                };
                if payload == "[DONE]" {
                    done = true;
                    continue;
                }
                let chunk: Value = serde_json::from_str(payload)
                    .map_err(|e| ClientError::Protocol(format!("bad event: {e}")))?;
                if chunk.pointer("/error/message").is_some() {
                    return Err(api_error(status, &chunk));
                }
                if let Some(account) = chunk.get("cloister") {
                    cloister = account.clone();
                }
                if let Some(m) = chunk.pointer("/model").and_then(Value::as_str) {
                    m.clone_into(&mut model);
                }
                if let Some(piece) = chunk
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                {
                    on_text(piece);
                    text.push_str(piece);
                }
            }
        }
        if !done {
            return Err(ClientError::Protocol(
                "event stream ended without [DONE]".into(),
            ));
        }
        Ok(ChatAnswer {
            text,
            model,
            raw: json!({ "cloister": cloister }),
        })
    }
}

fn api_error(status: StatusCode, value: &Value) -> ClientError {
    let field = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let message = field("/error/message");
    ClientError::Api {
        status,
        code: field("/error/code"),
        message: if message.is_empty() {
            "no message".into()
        } else {
            message
        },
        cloister: value.get("cloister").cloned().unwrap_or(Value::Null),
    }
}

/// Reads a whole body, up to [`MAX_RESPONSE`].
async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ClientError> {
    Ok(http_body_util::Limited::new(body, MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
