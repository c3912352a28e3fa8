//! needled's HTTP API as the VM tests call it: one bearer token, JSON bodies, generous
//! timeouts for a TCG guest; on needle-client.

use std::time::{Duration, Instant};

use serde_json::Value;

/// needled's API at `base` (`http://host:port`), called with one bearer token.
pub struct Api {
    /// `http://host:port`.
    pub base: String,
    /// The bearer token of every call.
    pub token: String,
    /// For an `https://` base: how the server's certificate is trusted.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Api {
    /// One call: the status and the JSON body (`Null` if none), or `Err` naming the call when
    /// no answer came (needled, or the whole guest, gone).
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut client = needle_client::Client::builder(&self.base, &self.token)
            .timeout(Duration::from_secs(30));
        if let Some(tls) = &self.tls {
            client = client.tls(needle_client::Tls::Config(std::sync::Arc::clone(tls)));
        }
        let client = client
            .build()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (status, body) = client
            .call(method, path, body.as_ref())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        // As before: a body that is not JSON is Null here.
        Ok((status, if body.is_string() { Value::Null } else { body }))
    }

    /// One call that must get an answer.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// One call that must succeed (2xx); its body.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert!(status < 300, "{method} {path}: {status} {v}");
        v
    }

    /// Polls `/v1/status` until `pred` holds; panics after `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let s = self.ok("GET", "/v1/status", None);
            if pred(&s) {
                return s;
            }
            assert!(start.elapsed() < timeout, "{what}: timed out; status {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every item of the default checklist ticked, as a session's creation needs.
pub fn checklist() -> Value {
    let config = needled::config::parse("", "defaults").expect("the defaults parse");
    Value::Object(
        config
            .session
            .checklist
            .iter()
            .map(|c| (c.id.clone(), Value::Bool(true)))
            .collect(),
    )
}
