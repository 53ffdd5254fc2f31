//! The HTTP API inside the attested channel: OpenAI-compatible chat
//! completions (with SSE streaming), the model list, fresh attestation and a
//! health check. Prompts, answers, caller and patient identities are never
//! logged: the logs leave the enclave.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloister_attestation::collect::EvidenceSource;
use cloister_attestation::ratls::{RaTlsError, RaTlsIdentity};
use cloister_audit::record::{Outcome, StreamEnd};
use cloister_audit::{AuditLog, Event, SealedFields};
use cloister_inference::{tasks, ChatMessage, Completion, Engine, EngineError, GenerationParams};
use cloister_policy::abi::{Gate, Request as PolicyRequest};
use cloister_policy::identity::{Caller, TokenError, TokenVerifier};
use cloister_policy::{GateOutcome, LoadedBundle};
use hyper::body::{Bytes, Frame};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::audit::Draft;
use crate::config::Limits;
use crate::grounding::{Citation, Grounded, Grounding};
use crate::policy::{self, QueryContext};

/// What every request handler can reach.
pub(crate) struct AppState {
    pub(crate) engine: Option<Arc<dyn Engine>>,
    pub(crate) grounding: Option<Grounding>,
    /// Who is answering, as every response's `cloister.enclave` says.
    pub(crate) enclave_summary: serde_json::Value,
    pub(crate) tokens: TokenVerifier,
    pub(crate) identity: Arc<RaTlsIdentity>,
    pub(crate) source: Arc<dyn EvidenceSource>,
    pub(crate) limits: Limits,
    pub(crate) sealed: Vec<SealedSummary>,
    pub(crate) policy: LoadedBundle,
    pub(crate) audit: Arc<AuditLog>,
}

/// What `/healthz` says of an unsealed bundle: only what its header, which
/// the host holds anyway, already says.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SealedSummary {
    name: String,
    key_id: String,
    kind: &'static str,
    version: u64,
    bytes: u64,
}

impl SealedSummary {
    pub(crate) fn of(bundle: &crate::sealed::UnsealedBundle) -> Self {
        Self {
            name: bundle.name.clone(),
            key_id: bundle.header.key_id.clone(),
            kind: bundle.header.kind.as_str(),
            version: bundle.header.bundle_version,
            bytes: bundle.header.plaintext_len,
        }
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.max_request_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/models", get(models))
        .route("/v1/attestation", get(attestation))
        .route("/v1/chat/completions", post(chat_completions))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// An error in the OpenAI shape: `{"error": {"message", "type", "code"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
    /// The audit record of the request it answers, once written.
    audit: Option<serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        Self {
            status,
            kind,
            code,
            message,
            audit: None,
        }
    }

    fn audit_unavailable(e: &cloister_audit::AuditError) -> Self {
        tracing::error!(error = %e, "audit record not durable: answer withheld");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "audit_unavailable",
            format!("the audit record could not be made durable, so nothing is released: {e}"),
        )
    }

    fn bad_request(code: &'static str, message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": { "message": self.message, "type": self.kind, "code": self.code }
        });
        if let (Some(audit), Some(object)) = (self.audit, body.as_object_mut()) {
            object.insert("cloister".into(), json!({ "audit": audit }));
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: say why, in the header too.
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.message.replace('"', "'")
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_token",
            e.to_string(),
        )
    }
}

fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Caller, ApiError> {
    bearer_caller(headers, state).map_err(|e| {
        // Denials are logged with their reason, never with the token.
        tracing::warn!(reason = %e, "request denied: 401");
        ApiError::from(e)
    })
}

fn bearer_caller(headers: &HeaderMap, state: &AppState) -> Result<Caller, TokenError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?
        .to_str()
        .map_err(|_| TokenError::Malformed("Authorization header is not ASCII".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(TokenError::Missing)?;
    let caller = state
        .tokens
        .verify(token.trim(), OffsetDateTime::now_utc())?;
    // The enclave's logs leave the enclave (the host collects them), so
    // they carry no PHI and no identities: who asked about whom belongs in
    // the encrypted audit log.
    tracing::info!(
        role = %caller.role,
        purpose_of_use = %caller.purpose_of_use,
        "caller authenticated"
    );
    Ok(caller)
}

/// Healthy only while the audit log accepts records: an enclave that can
/// no longer record answers nothing, and a failing health check makes the
/// host restart it, which recovers the log.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let tee = state.identity.tee();
    let (status, code, audit) = match state.audit.health() {
        Ok(()) => (
            StatusCode::OK,
            "ok",
            json!({ "log": state.audit.origin(), "enclave": state.audit.enclave().to_string() }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            json!({ "log": state.audit.origin(), "error": e.to_string() }),
        ),
    };
    let body = Json(json!({
        "status": code,
        "audit": audit,
        "tee": tee.name(),
        "insecure": tee.is_insecure(),
        "engine": state.engine.as_ref().map(|e| e.model_id()),
        "sealed": state.sealed,
        "policy": {
            "bundle": state.policy.name(),
            "digest": hex::encode(state.policy.digest()),
            "modules": state.policy.module_names().collect::<Vec<_>>(),
        },
    }));
    (status, body).into_response()
}

async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authenticate(&headers, &state)?;
    let data: Vec<_> = state
        .engine
        .iter()
        .map(|e| {
            json!({
                "id": e.model_id(),
                "object": "model",
                "created": 0,
                "owned_by": "cloister",
                "test_engine": e.is_test_engine(),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

#[derive(Deserialize)]
struct AttestationQuery {
    nonce: String,
}

async fn attestation(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AttestationQuery>,
) -> Result<Response, ApiError> {
    let nonce = hex::decode(&query.nonce)
        .map_err(|e| ApiError::bad_request("invalid_nonce", format!("nonce is not hex: {e}")))?;
    let worker_state = state.clone();
    // Hardware report requests are blocking ioctls or configfs I/O.
    let outcome = tokio::task::spawn_blocking(move || {
        worker_state
            .identity
            .attest_fresh(worker_state.source.as_ref(), &nonce)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "attestation_failed",
            e.to_string(),
        )
    })?;
    match outcome {
        Ok(document) => Ok(Json(document).into_response()),
        Err(e @ RaTlsError::BadNonce(_)) => {
            Err(ApiError::bad_request("invalid_nonce", e.to_string()))
        }
        Err(e) => {
            tracing::error!(error = %e, "fresh evidence could not be collected");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "attestation_failed",
                e.to_string(),
            ))
        }
    }
}

/// The OpenAI request fields Cloister reads; others are accepted and ignored,
/// as OpenAI clients send many optional ones. Cloister's own fields are in
/// the `cloister` object.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default, alias = "max_completion_tokens")]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<StopSpec>,
    #[serde(default)]
    cloister: QueryContext,
}

/// OpenAI's `stop`: one string or up to four.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopSpec {
    One(String),
    Many(Vec<String>),
}

/// Most stop sequences a request may give (as OpenAI allows).
const MAX_STOP: usize = 4;

/// Every chat request, answered or not, gets its audit record, and nothing
/// is sent until that record is durable.
async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut draft = Draft::new();
    let handled = handle_chat(&state, &headers, &body, &mut draft).await;
    let audit = state.audit.clone();
    match handled {
        Err(mut error) => {
            let outcome = if error.status == StatusCode::UNAUTHORIZED {
                Outcome::Unauthenticated
            } else if error.status.is_server_error() {
                Outcome::Failed
            } else {
                Outcome::Rejected
            };
            let (event, sealed) = draft.finish(outcome, error.status.as_u16(), Some(error.code));
            match record(&audit, event, sealed).await {
                Ok(seq) => {
                    error.audit = Some(audit_ref(&audit, seq));
                    error.into_response()
                }
                Err(e) => e.into_response(),
            }
        }
        Ok(Handled::Denied(report)) => {
            report.audit_into(&mut draft);
            let (event, sealed) = draft.finish(Outcome::Denied, 403, Some(report.denial().2));
            match record(&audit, event, sealed).await {
                Ok(seq) => policy_denial(&report, &audit_ref(&audit, seq)),
                Err(e) => e.into_response(),
            }
        }
        Ok(Handled::Live {
            engine,
            query,
            report,
        }) => {
            report.audit_into(&mut draft);
            let (event, sealed) = draft.finish(Outcome::Streaming, 200, None);
            match record(&audit, event, sealed).await {
                Ok(seq) => stream_live(
                    engine,
                    *query,
                    report,
                    audit,
                    seq,
                    state.enclave_summary.clone(),
                ),
                Err(e) => e.into_response(),
            }
        }
        Ok(Handled::Answer {
            query,
            completion,
            text,
            report,
            stream,
        }) => {
            report.audit_into(&mut draft);
            draft.answer(
                &audit,
                &text,
                completion.prompt_tokens,
                completion.completion_tokens,
            );
            let (event, sealed) = draft.finish(Outcome::Answered, 200, None);
            let seq = match record(&audit, event, sealed).await {
                Ok(seq) => seq,
                Err(e) => return e.into_response(),
            };
            let cloister = json!({
                "policy": report.to_json(),
                "audit": audit_ref(&audit, seq),
                "task": query.task,
                "citations": query.grounded.citations,
                "enclave": state.enclave_summary,
            });
            if stream {
                stream_buffered(&query, &completion, text, cloister)
            } else {
                Json(json!({
                    "id": query.id,
                    "object": "chat.completion",
                    "created": query.created,
                    "model": query.model,
                    "choices": [{
                        "index": 0,
                        "message": { "role": "assistant", "content": text },
                        "finish_reason": completion.finish_reason,
                    }],
                    "usage": usage(&completion),
                    "cloister": cloister,
                }))
                .into_response()
            }
        }
    }
}

/// Appends a record from a blocking thread and waits until it is durable.
async fn record(
    audit: &Arc<AuditLog>,
    event: Event,
    sealed: SealedFields,
) -> Result<u64, ApiError> {
    let audit = audit.clone();
    let appended = tokio::task::spawn_blocking(move || audit.append(event, sealed))
        .await
        .map_err(|e| {
            ApiError::audit_unavailable(&cloister_audit::AuditError::Encoding(e.to_string()))
        })?;
    appended
        .map(|receipt| receipt.seq)
        .map_err(|e| ApiError::audit_unavailable(&e))
}

/// How a response names its audit record.
fn audit_ref(audit: &AuditLog, seq: u64) -> serde_json::Value {
    json!({ "log": audit.origin(), "record": seq })
}

/// What the gates and the engine made of a request, before it is audited.
enum Handled {
    Denied(PolicyReport),
    /// Admitted, to be streamed as generated.
    Live {
        engine: Arc<dyn Engine>,
        query: Box<ChatQuery>,
        report: PolicyReport,
    },
    Answer {
        query: Box<ChatQuery>,
        completion: Completion,
        /// The answer as released: after the output gate's redactions.
        text: String,
        report: PolicyReport,
        stream: bool,
    },
}

async fn handle_chat(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: &Bytes,
    draft: &mut Draft,
) -> Result<Handled, ApiError> {
    let caller = authenticate(headers, state)?;
    draft.caller(&state.audit, &caller);
    let mut request: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    let task = request
        .cloister
        .task
        .clone()
        .unwrap_or_else(|| "chat".into());
    let record = match &request.cloister.fhir {
        Some(bundle) => {
            Some(crate::fhir::read(bundle).map_err(|e| ApiError::bad_request("invalid_fhir", e))?)
        }
        None => None,
    };
    // The query is about the bundle's patient: named by the client, it
    // must be the same one; unnamed, it is the bundle's.
    let in_bundle = record.as_ref().and_then(|r| r.patient.clone());
    let mismatch = match (&request.cloister.patient, in_bundle) {
        (Some(named), Some(in_bundle)) => *named != in_bundle,
        (None, in_bundle) => {
            request.cloister.patient = in_bundle;
            false
        }
        (Some(_), None) => false,
    };
    draft.context(&state.audit, &caller, &request.cloister);
    if mismatch {
        return Err(ApiError::bad_request(
            "patient_mismatch",
            "cloister.patient names a different patient than the FHIR bundle holds".into(),
        ));
    }
    if !tasks::TASKS.contains(&task.as_str()) {
        return Err(ApiError::bad_request(
            "unknown_task",
            format!("cloister.task must be one of {}", tasks::TASKS.join(", ")),
        ));
    }
    if task == "prior_auth" && record.is_none() {
        return Err(ApiError::bad_request(
            "fhir_required",
            format!("task {task} needs the patient's record as a FHIR R4 Bundle in cloister.fhir"),
        ));
    }
    let engine = state.engine.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "no_engine",
            "this enclave has no inference engine configured".into(),
        )
    })?;
    let id = format!("chatcmpl-{}", hex::encode(rand_id()));
    draft.prompt(&state.audit, engine.model_id(), &id, &request.messages);
    if let Some(model) = &request.model {
        if model != engine.model_id() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "model {model:?} is not served here (serving {:?})",
                    engine.model_id()
                ),
            ));
        }
    }
    if request.messages.is_empty() || request.messages.len() > state.limits.max_messages {
        return Err(ApiError::bad_request(
            "invalid_messages",
            format!(
                "between 1 and {} messages are required",
                state.limits.max_messages
            ),
        ));
    }
    let max_tokens = request.max_tokens.unwrap_or(state.limits.max_tokens);
    if max_tokens == 0 || max_tokens > state.limits.max_tokens {
        return Err(ApiError::bad_request(
            "invalid_max_tokens",
            format!("max_tokens must be 1 to {}", state.limits.max_tokens),
        ));
    }
    let stop = match request.stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s],
        Some(StopSpec::Many(v)) => v,
    };
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(
            "invalid_stop",
            format!("stop must be 1 to {MAX_STOP} non-empty strings"),
        ));
    }
    let temperature = request.temperature.unwrap_or(0.0);
    let top_p = request.top_p.unwrap_or(1.0);
    if !((0.0..=2.0).contains(&temperature) && top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad_request(
            "invalid_sampling",
            "temperature must be 0 to 2 and top_p above 0 and at most 1".into(),
        ));
    }
    let query = ChatQuery {
        policy_request: policy::request_for(&caller, &request.cloister, OffsetDateTime::now_utc()),
        messages: request.messages,
        task,
        record: record.map(|r| r.text),
        grounded: Grounded::default(),
        params: GenerationParams {
            max_tokens,
            temperature,
            top_p,
            seed: request.seed,
            stop,
            ignore_eos: false,
        },
        id,
        created: OffsetDateTime::now_utc().unix_timestamp(),
        model: engine.model_id().to_owned(),
    };
    if request.stream && !state.policy.has_gate(Gate::Output) {
        // Nothing judges the answer, so it can stream as it is generated,
        // once the input gate has passed.
        let worker = state.clone();
        let (query, input) = tokio::task::spawn_blocking(move || {
            let mut query = query;
            let input = gate_input(&worker.policy, &mut query);
            let grounded = if input.allowed {
                ground(&worker, &mut query)
            } else {
                Ok(())
            };
            grounded.map(|()| (query, input))
        })
        .await
        .map_err(|e| engine_failure(&EngineError::Failed(e.to_string())))?
        .map_err(|e| engine_failure(&e))?;
        let report = PolicyReport::new(&state.policy, input, None);
        if !report.input.allowed {
            return Ok(Handled::Denied(report));
        }
        return Ok(Handled::Live {
            engine,
            query: Box::new(query),
            report,
        });
    }
    let worker = state.clone();
    let stream = request.stream;
    let answered = tokio::task::spawn_blocking(move || answer(&worker, engine.as_ref(), query))
        .await
        .map_err(|e| engine_failure(&EngineError::Failed(e.to_string())))?
        .map_err(|e| engine_failure(&e))?;
    Ok(match answered {
        Answered::Denied(report) => Handled::Denied(report),
        Answered::Answer {
            query,
            completion,
            text,
            report,
        } => Handled::Answer {
            query,
            completion,
            text,
            report,
            stream,
        },
    })
}

/// One query on its way through the gates.
struct ChatQuery {
    policy_request: PolicyRequest,
    messages: Vec<ChatMessage>,
    /// The clinical task.
    task: String,
    /// The patient record read from the request's FHIR bundle.
    record: Option<String>,
    /// The sources retrieved for it.
    grounded: Grounded,
    params: GenerationParams,
    id: String,
    created: i64,
    model: String,
}

enum Answered {
    Denied(PolicyReport),
    Answer {
        query: Box<ChatQuery>,
        completion: Completion,
        /// The answer as released: after the output gate's redactions.
        text: String,
        report: PolicyReport,
    },
}

/// What the gates decided, as the response (and later the audit record)
/// carries it.
struct PolicyReport {
    bundle: [u8; 32],
    input: GateOutcome,
    output: Option<GateOutcome>,
    /// The sources the refused answer was given (for a denial at the
    /// output gate, so the caller sees what it should have cited).
    citations: Vec<Citation>,
}

impl PolicyReport {
    fn new(policy: &LoadedBundle, input: GateOutcome, output: Option<GateOutcome>) -> Self {
        Self {
            bundle: policy.digest(),
            input,
            output,
            citations: Vec::new(),
        }
    }

    /// Puts the gates' decisions in the query's audit record.
    fn audit_into(&self, draft: &mut Draft) {
        draft.gates(self.bundle, &self.input, self.output.as_ref());
    }

    /// The gate that denied, the denying module, its reason code and message.
    fn denial(&self) -> (&GateOutcome, &str, &str, &str) {
        let gate = self
            .output
            .as_ref()
            .filter(|o| !o.allowed)
            .unwrap_or(&self.input);
        let (module, code, message) = gate
            .denied_by()
            .and_then(|m| {
                m.reasons
                    .first()
                    .map(|r| (m.module.as_str(), r.code.as_str(), r.message.as_str()))
            })
            .unwrap_or(("(none)", "policy_denied", "no module gave a reason"));
        (gate, module, code, message)
    }

    fn to_json(&self) -> serde_json::Value {
        let mut requirements = self.input.requirements.clone();
        for r in self.output.iter().flat_map(|o| &o.requirements) {
            if !requirements.contains(r) {
                requirements.push(r.clone());
            }
        }
        json!({
            "bundle": hex::encode(self.bundle),
            "input": self.input,
            "output": self.output,
            "requirements": requirements,
        })
    }
}

/// Run the input gate over the messages and the patient record, and apply
/// its redactions to them.
fn gate_input(policy: &LoadedBundle, query: &mut ChatQuery) -> GateOutcome {
    let mut parts: Vec<&str> = query.messages.iter().map(|m| m.content.as_str()).collect();
    if let Some(record) = &query.record {
        parts.push(record);
    }
    let input = policy.evaluate_parts(Gate::Input, &query.policy_request, &parts);
    log_gate(&input);
    if input.allowed && input.redacted {
        for (message, part) in query.messages.iter_mut().zip(&input.parts) {
            message.content.clone_from(part);
        }
        if let (Some(record), Some(part)) =
            (&mut query.record, input.parts.get(query.messages.len()))
        {
            record.clone_from(part);
        }
    }
    input
}

/// After the input gate: retrieve the sources the question rests on and put
/// the task's system prompt (record, sources) before the chat.
fn ground(state: &AppState, query: &mut ChatQuery) -> Result<(), EngineError> {
    if let Some(grounding) = &state.grounding {
        let question = query
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        query.grounded = grounding.retrieve(&query.task, question)?;
        query
            .policy_request
            .sources
            .clone_from(&query.grounded.sources);
    }
    tasks::apply(
        &query.task,
        &mut query.messages,
        query.record.as_deref(),
        &query.grounded.passages_text,
    );
    Ok(())
}

/// Input gate, generation, output gate: the whole answer, held until the
/// output gate has passed it.
fn answer(
    state: &AppState,
    engine: &dyn Engine,
    mut query: ChatQuery,
) -> Result<Answered, EngineError> {
    let policy = &state.policy;
    let input = gate_input(policy, &mut query);
    if !input.allowed {
        return Ok(Answered::Denied(PolicyReport::new(policy, input, None)));
    }
    ground(state, &mut query)?;
    let completion = engine.generate(&query.messages, &query.params, &mut |_| {
        ControlFlow::Continue(())
    })?;
    if !policy.has_gate(Gate::Output) {
        let text = completion.text.clone();
        query.grounded.mark_cited(&text);
        return Ok(Answered::Answer {
            query: Box::new(query),
            completion,
            text,
            report: PolicyReport::new(policy, input, None),
        });
    }
    let mut answer_request = query.policy_request.clone();
    answer_request.text.clone_from(&completion.text);
    let output = policy.evaluate(Gate::Output, &answer_request);
    log_gate(&output);
    if !output.allowed {
        let mut report = PolicyReport::new(policy, input, Some(output));
        report.citations = query.grounded.citations;
        return Ok(Answered::Denied(report));
    }
    let text = output.text.clone();
    query.grounded.mark_cited(&text);
    Ok(Answered::Answer {
        query: Box::new(query),
        completion,
        text,
        report: PolicyReport::new(policy, input, Some(output)),
    })
}

/// Gate decisions leave the enclave in its logs only as module and reason
/// codes: no text, no identities.
fn log_gate(outcome: &GateOutcome) {
    if outcome.allowed {
        tracing::info!(
            gate = outcome.gate.as_str(),
            redacted = outcome.redacted,
            requirements = ?outcome.requirements,
            micros = outcome.micros,
            "policy gate passed"
        );
    } else {
        tracing::warn!(
            gate = outcome.gate.as_str(),
            reasons = ?outcome.reason_codes(),
            micros = outcome.micros,
            "policy gate denied the query"
        );
    }
}

/// 403 in OpenAI's error shape, with the gates' decisions and the audit
/// record beside it.
fn policy_denial(report: &PolicyReport, audit: &serde_json::Value) -> Response {
    let (gate, module, code, message) = report.denial();
    let body = json!({
        "error": {
            "message": format!("denied by policy module {module} at the {} gate: {message}", gate.gate.as_str()),
            "type": "policy_denied",
            "code": code,
        },
        "cloister": { "policy": report.to_json(), "audit": audit, "citations": report.citations },
    });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

fn usage(completion: &Completion) -> serde_json::Value {
    json!({
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    })
}

fn engine_failure(e: &EngineError) -> ApiError {
    match e {
        EngineError::InvalidRequest(m) => ApiError::bad_request("invalid_request", m.clone()),
        _ => {
            tracing::error!(error = %e, "inference failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "inference_failed",
                e.to_string(),
            )
        }
    }
}

/// One `chat.completion.chunk` event.
fn chunk(
    query: &ChatQuery,
    delta: serde_json::Value,
    finish: serde_json::Value,
    extra: Option<serde_json::Value>,
) -> Bytes {
    let mut event = json!({
        "id": query.id, "object": "chat.completion.chunk", "created": query.created, "model": query.model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    });
    if let (Some(extra), Some(object)) = (extra, event.as_object_mut()) {
        object.insert("cloister".into(), extra);
    }
    Bytes::from(format!("data: {event}\n\n"))
}

/// An answer that has passed the output gate, sent as server-sent events:
/// it was held for the gate, so it arrives as one content chunk.
fn stream_buffered(
    query: &ChatQuery,
    completion: &Completion,
    text: String,
    cloister: serde_json::Value,
) -> Response {
    let mut last = cloister;
    if let Some(object) = last.as_object_mut() {
        object.insert("usage".into(), usage(completion));
    }
    let events = [
        chunk(
            query,
            json!({ "role": "assistant" }),
            serde_json::Value::Null,
            None,
        ),
        chunk(
            query,
            json!({ "content": text }),
            serde_json::Value::Null,
            None,
        ),
        chunk(
            query,
            json!({}),
            json!(completion.finish_reason),
            Some(last),
        ),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ];
    let (tx, rx) = mpsc::channel::<Bytes>(events.len());
    for event in events {
        // The channel holds all four; the receiver is still here.
        let _ = tx.try_send(event);
    }
    sse_response(rx)
}

/// Server-sent events in OpenAI's `chat.completion.chunk` shape, ending
/// with `data: [DONE]`, as tokens are generated (only when no module
/// judges the answer). Generation stops when the client goes away. The
/// query's record (`query_record`) was made durable before the first
/// token; a `stream_end` record follows the last, and the final chunk
/// names both.
fn stream_live(
    engine: Arc<dyn Engine>,
    query: ChatQuery,
    report: PolicyReport,
    audit: Arc<AuditLog>,
    query_record: u64,
    enclave: serde_json::Value,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::task::spawn_blocking(move || {
        if tx
            .blocking_send(chunk(
                &query,
                json!({ "role": "assistant" }),
                serde_json::Value::Null,
                None,
            ))
            .is_err()
        {
            return;
        }
        let mut streamed = String::new();
        let outcome = engine.generate(&query.messages, &query.params, &mut |text| {
            streamed.push_str(text);
            match tx.blocking_send(chunk(
                &query,
                json!({ "content": text }),
                serde_json::Value::Null,
                None,
            )) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        });
        let end = StreamEnd {
            query: query_record,
            answer_digest: audit.digest("answer", streamed.as_bytes()),
            completion_tokens: outcome.as_ref().ok().map(|c| c.completion_tokens),
            completed: outcome.is_ok() && !tx.is_closed(),
            sealed: None,
        };
        let sealed = SealedFields {
            answer: audit.keeps_text().then_some(streamed),
            ..SealedFields::default()
        };
        let ended = audit.append(Event::StreamEnd(end), sealed);
        let mut grounded = query.grounded.clone();
        if let Ok(c) = &outcome {
            grounded.mark_cited(&c.text);
        }
        let citations: &[Citation] = &grounded.citations;
        let last = match (outcome, ended) {
            (Ok(c), Ok(receipt)) => chunk(
                &query,
                json!({}),
                json!(c.finish_reason),
                Some(json!({
                    "policy": report.to_json(),
                    "task": query.task,
                    "citations": citations,
                    "enclave": enclave,
                    "usage": usage(&c),
                    "audit": { "log": audit.origin(), "record": query_record, "end_record": receipt.seq },
                })),
            ),
            (Err(e), _) => {
                tracing::error!(error = %e, "inference failed mid-stream");
                error_event(&e.to_string())
            }
            (Ok(_), Err(e)) => {
                tracing::error!(error = %e, "the stream's end record could not be made durable");
                error_event(&format!("the audit record could not be made durable: {e}"))
            }
        };
        let _ = tx.blocking_send(last);
        let _ = tx.blocking_send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    sse_response(rx)
}

fn error_event(message: &str) -> Bytes {
    Bytes::from(format!(
        "data: {}\n\n",
        json!({ "error": { "message": message, "type": "server_error" } })
    ))
}

fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let mut response = Response::new(axum::body::Body::new(ChannelBody(rx)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A response body fed by a channel: each message is one frame.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|b| Ok(Frame::data(b))))
    }
}

fn rand_id() -> [u8; 12] {
    let mut id = [0u8; 12];
    // A response id need not be secret, only unlikely to repeat.
    let now = OffsetDateTime::now_utc()
        .unix_timestamp_nanos()
        .to_le_bytes();
    let counter = NEXT_ID
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_le_bytes();
    for (i, b) in id.iter_mut().enumerate() {
        *b = now.get(i).copied().unwrap_or(0) ^ counter.get(i % 8).copied().unwrap_or(0);
    }
    id
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
