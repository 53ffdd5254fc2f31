//! Forwarding to an OpenAI-compatible engine running in the same CVM (vLLM,
//! llama.cpp's server, `cloister serve-model`), for models too large for the
//! embedded engine or served from a confidential GPU.
//!
//! The engine's address is part of the enclave's measured configuration and
//! must be a loopback address: the prompt travels to it in plain HTTP, which
//! is only private while it never leaves the CVM. Anything else is refused
//! at start.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::{ChatMessage, Completion, Engine, EngineError, FinishReason, GenerationParams};

/// Longest server-sent event line accepted from the engine.
const MAX_EVENT_LINE: u64 = 1 << 20;

/// Where the in-CVM engine listens, from the enclave's measured configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    /// `IP:PORT`, a loopback address.
    pub address: String,
    /// The model name the engine serves.
    pub model: String,
    /// The id clients see (default: `model`).
    #[serde(default)]
    pub model_id: Option<String>,
    /// Longest a whole generation may take, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    300
}

/// An OpenAI-compatible engine in the same CVM.
pub struct OpenAiEngine {
    url: String,
    model: String,
    model_id: String,
    agent: ureq::Agent,
}

fn failed(message: impl Into<String>) -> EngineError {
    EngineError::Failed(message.into())
}

impl OpenAiEngine {
    /// Checks the settings; nothing is contacted until the first query.
    pub fn new(settings: &OpenAiSettings) -> Result<Self, EngineError> {
        let address: SocketAddr = settings.address.parse().map_err(|e| {
            failed(format!(
                "openai.address {:?} is not IP:PORT: {e}",
                settings.address
            ))
        })?;
        if !address.ip().is_loopback() {
            return Err(failed(format!(
                "openai.address {address} is not a loopback address: prompts would leave the CVM in plain HTTP"
            )));
        }
        if settings.model.is_empty() {
            return Err(failed("openai.model is empty"));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(settings.timeout_secs.max(1))))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            url: format!("http://{address}/v1/chat/completions"),
            model: settings.model.clone(),
            model_id: settings
                .model_id
                .clone()
                .unwrap_or_else(|| settings.model.clone()),
            agent,
        })
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl Engine for OpenAiEngine {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, EngineError> {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if let Some(object) = body.as_object_mut() {
            if let Some(seed) = params.seed {
                object.insert("seed".into(), json!(seed));
            }
            if !params.stop.is_empty() {
                object.insert("stop".into(), json!(params.stop));
            }
        }
        let mut response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| {
                failed(format!(
                    "the in-CVM engine at {} is unreachable: {e}",
                    self.url
                ))
            })?;
        let status = response.status();
        if !status.is_success() {
            let mut detail = String::new();
            let _ = response
                .body_mut()
                .as_reader()
                .take(4096)
                .read_to_string(&mut detail);
            let message = format!("the in-CVM engine answered {status}: {}", detail.trim());
            return Err(if status.is_client_error() {
                EngineError::InvalidRequest(message)
            } else {
                failed(message)
            });
        }
        let mut reader = BufReader::new(response.body_mut().as_reader());
        let mut text = String::new();
        let mut pieces = 0u32;
        let mut usage = None;
        let mut finish_reason = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_EVENT_LINE)
                .read_until(b'\n', &mut line)
                .map_err(|e| failed(format!("reading the in-CVM engine's stream: {e}")))?;
            if n == 0 {
                break;
            }
            if !line.ends_with(b"\n") && n as u64 == MAX_EVENT_LINE {
                return Err(failed("the in-CVM engine sent an event line over 1 MiB"));
            }
            let Some(data) = std::str::from_utf8(&line)
                .ok()
                .map(str::trim)
                .and_then(|l| l.strip_prefix("data:"))
                .map(str::trim)
            else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let chunk: Chunk = serde_json::from_str(data)
                .map_err(|e| failed(format!("the in-CVM engine sent a malformed chunk: {e}")))?;
            if let Some(u) = chunk.usage {
                usage = Some(u);
            }
            for choice in chunk.choices {
                if let Some(reason) = choice.finish_reason {
                    finish_reason = Some(reason);
                }
                if let Some(piece) = choice.delta.content.filter(|p| !p.is_empty()) {
                    text.push_str(&piece);
                    pieces += 1;
                    if on_text(&piece).is_break() {
                        return Ok(Completion {
                            text,
                            prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
                            completion_tokens: pieces,
                            finish_reason: FinishReason::Cancelled,
                        });
                    }
                }
            }
        }
        let finish_reason = match finish_reason.as_deref() {
            Some("length") => FinishReason::Length,
            Some(_) => FinishReason::Stop,
            None => {
                return Err(failed(
                    "the in-CVM engine's stream ended before the answer did",
                ))
            }
        };
        Ok(Completion {
            text,
            // Engines that do not report usage are counted by content
            // chunks, one token each in vLLM and llama.cpp.
            prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
            completion_tokens: usage.map_or(pieces, |u| u.completion_tokens),
            finish_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::io::Write as _;
    use std::net::TcpListener;

    use super::*;

    fn settings(address: &str) -> OpenAiSettings {
        OpenAiSettings {
            address: address.into(),
            model: "m".into(),
            model_id: None,
            timeout_secs: 10,
        }
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        let e = OpenAiEngine::new(&settings("10.0.0.5:8000")).err().unwrap();
        assert!(e.to_string().contains("not a loopback address"), "{e}");
        assert!(OpenAiEngine::new(&settings("localhost:8000")).is_err());
        assert!(OpenAiEngine::new(&settings("[::1]:8000")).is_ok());
        assert_eq!(
            OpenAiEngine::new(&settings("127.0.0.1:8000"))
                .unwrap()
                .model_id(),
            "m"
        );
    }

    /// Serves one HTTP response on loopback and hands back what was asked.
    fn serve_once(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the headers and the body (Content-Length bytes).
            loop {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            stream.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).to_string()
        });
        (address, handle)
    }

    #[test]
    fn a_streamed_answer_is_relayed_with_its_usage() {
        let (address, server) = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
             data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
             data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n\
             data: {\"choices\":[{\"delta\":{\"content\":\" world\"},\"finish_reason\":\"stop\"}]}\n\n\
             data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n\
             data: [DONE]\n\n",
        );
        let engine = OpenAiEngine::new(&settings(&address)).unwrap();
        let mut pieces = Vec::new();
        let params = GenerationParams {
            max_tokens: 5,
            seed: Some(3),
            stop: vec!["END".into()],
            ..GenerationParams::default()
        };
        let messages = [ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }];
        let c = engine
            .generate(&messages, &params, &mut |p| {
                pieces.push(p.to_owned());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(pieces, vec!["Hello", " world"]);
        assert_eq!(
            (c.text.as_str(), c.prompt_tokens, c.completion_tokens),
            ("Hello world", 7, 2)
        );
        assert_eq!(c.finish_reason, FinishReason::Stop);
        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /v1/chat/completions"),
            "{request}"
        );
        for part in [
            "\"model\":\"m\"",
            "\"max_tokens\":5",
            "\"seed\":3",
            "\"stop\":[\"END\"]",
            "\"stream\":true",
        ] {
            assert!(request.contains(part), "{part} missing from {request}");
        }
    }

    #[test]
    fn engine_errors_and_cut_streams_are_failures() {
        let (address, _server) = serve_once(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 21\r\nconnection: close\r\n\r\n{\"error\":\"too long\"}\n",
        );
        let engine = OpenAiEngine::new(&settings(&address)).unwrap();
        let messages = [ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }];
        let e = engine
            .generate(&messages, &GenerationParams::default(), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert!(
            matches!(&e, EngineError::InvalidRequest(m) if m.contains("too long")),
            "{e}"
        );

        let (address, _server) = serve_once(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        );
        let engine = OpenAiEngine::new(&settings(&address)).unwrap();
        let e = engine
            .generate(&messages, &GenerationParams::default(), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert!(e.to_string().contains("ended before the answer did"), "{e}");

        // Nothing listening.
        let engine = OpenAiEngine::new(&settings("127.0.0.1:1")).unwrap();
        assert!(engine
            .generate(&messages, &GenerationParams::default(), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err()
            .to_string()
            .contains("unreachable"));
    }
}
