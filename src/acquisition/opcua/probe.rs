//! `energy-gateway probe --opcua opc.tcp://host:port [--node …]`: connect once, then read the
//! given nodes, or browse the server's Objects folder and read the variables found, and print
//! them with their status and source timestamps. What an installer runs to find the node ids of
//! a PLC's production counter.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use opcua_client::{Session, SessionPollResult};
use opcua_types::{
    BrowseDescription, BrowseDirection, BrowseResultMask, DataValue, NodeClass, NodeId, ObjectId,
    ReadValueId, ReferenceTypeId, TimestampsToReturn,
};

use super::client;
use super::config::OpcUaConfig;
use super::values;

/// Most variables a browse reads.
pub const MAX_VARIABLES: usize = 200;
/// Deepest folder level a browse descends to.
pub const MAX_DEPTH: usize = 6;

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// Endpoint and security/identity settings (its `nodes` are ignored).
    pub cfg: OpcUaConfig,
    /// Nodes to read; empty = browse.
    pub nodes: Vec<String>,
    pub pki: PathBuf,
}

/// One node as probed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbedNode {
    pub node: String,
    /// Browse path below Objects (browse only).
    pub path: Option<String>,
    pub value: Option<String>,
    /// The value as a number, when it is one.
    pub number: Option<f64>,
    pub status: String,
    pub source_timestamp: Option<String>,
    pub server_timestamp: Option<String>,
}

/// What a probe found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeResult {
    pub endpoint: String,
    pub browsed: bool,
    pub nodes: Vec<ProbedNode>,
}

impl ProbeResult {
    /// Nodes whose value could be read (status not bad).
    pub fn readable(&self) -> usize {
        self.nodes.iter().filter(|n| n.value.is_some()).count()
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} — {} node(s){}\n",
            self.endpoint,
            self.nodes.len(),
            if self.browsed {
                " found under Objects"
            } else {
                ""
            }
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "  {:<32} {:<28} {:>16}  {}  source {}\n",
                n.node,
                n.path.as_deref().unwrap_or("-"),
                n.value.as_deref().unwrap_or("-"),
                n.status,
                n.source_timestamp.as_deref().unwrap_or("none")
            ));
        }
        s
    }
}

fn time(t: &Option<opcua_types::DateTime>) -> Option<String> {
    t.as_ref()
        .filter(|d| !d.is_null())
        .map(|d| crate::readings::rfc3339_utc(Some(d.as_chrono().timestamp_millis())))
}

fn probed(node: String, path: Option<String>, dv: &DataValue) -> ProbedNode {
    let status = dv.status.unwrap_or(opcua_types::StatusCode::Good);
    let value = (!status.is_bad())
        .then(|| dv.value.as_ref().map(|v| v.to_string()))
        .flatten();
    ProbedNode {
        node,
        path,
        number: value
            .as_ref()
            .and(dv.value.as_ref())
            .and_then(|v| values::number(v).ok()),
        value,
        status: status.to_string(),
        source_timestamp: time(&dv.source_timestamp),
        server_timestamp: time(&dv.server_timestamp),
    }
}

/// Connects, reads or browses, disconnects.
pub async fn probe(req: ProbeRequest) -> Result<ProbeResult, String> {
    let ids = req
        .nodes
        .iter()
        .map(|n| values::parse_node_id(n))
        .collect::<Result<Vec<NodeId>, String>>()?;
    let (cfg, pki) = (req.cfg.clone(), req.pki.clone());
    let uri = "urn:energy-gateway:probe".to_string();
    let mut c = tokio::task::spawn_blocking(move || client::build(&cfg, &pki, &uri))
        .await
        .map_err(|e| format!("client setup stopped: {e}"))??;
    let identity = client::identity(&req.cfg)?;
    let (session, event_loop) = client::connect(&mut c, &req.cfg, identity, &req.pki).await?;
    // Drive the session; the first connect either succeeds or says why not.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let stream = event_loop.enter();
        futures_util::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let first = match &ev {
                Ok(SessionPollResult::Reconnected(_)) => Some(Ok(())),
                Ok(SessionPollResult::ReconnectFailed(code)) | Err(code) => Some(Err(*code)),
                _ => None,
            };
            if let Some(f) = first {
                let _ = tx.send(f);
            }
            if ev.is_err() {
                break;
            }
        }
    });
    let timeout = req.cfg.timeout;
    let first = tokio::time::timeout(timeout, rx.recv()).await;
    let result = match first {
        Ok(Some(Ok(()))) => run(&session, &req, ids, timeout).await,
        Ok(Some(Err(code))) => Err(client::explain(code, "", &req.cfg, &req.pki)),
        Ok(None) => Err("the session ended before it was connected".into()),
        Err(_) => Err(format!(
            "no session with {} within {timeout:?}",
            req.cfg.endpoint
        )),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
    driver.abort();
    result
}

async fn run(
    session: &Session,
    req: &ProbeRequest,
    ids: Vec<NodeId>,
    timeout: Duration,
) -> Result<ProbeResult, String> {
    let browsed = ids.is_empty();
    let targets: Vec<(NodeId, Option<String>)> = if browsed {
        browse(session, timeout).await?
    } else {
        ids.into_iter().map(|i| (i, None)).collect()
    };
    let to_read: Vec<ReadValueId> = targets.iter().map(|(i, _)| ReadValueId::from(i)).collect();
    let answers = if to_read.is_empty() {
        Vec::new()
    } else {
        tokio::time::timeout(
            timeout,
            session.read(&to_read, TimestampsToReturn::Both, 0.0),
        )
        .await
        .map_err(|_| format!("no answer to the read within {timeout:?}"))?
        .map_err(|e| client::explain(e.status(), &e.to_string(), &req.cfg, &req.pki))?
    };
    Ok(ProbeResult {
        endpoint: req.cfg.endpoint.clone(),
        browsed,
        nodes: targets
            .into_iter()
            .zip(answers.iter())
            .map(|((id, path), dv)| probed(id.to_string(), path, dv))
            .collect(),
    })
}

/// Variables below the Objects folder (the server's own `Server` object left out), breadth
/// first, at most [`MAX_VARIABLES`] and [`MAX_DEPTH`] levels.
async fn browse(
    session: &Session,
    timeout: Duration,
) -> Result<Vec<(NodeId, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut level: Vec<(NodeId, String)> = vec![(ObjectId::ObjectsFolder.into(), String::new())];
    for _ in 0..MAX_DEPTH {
        if level.is_empty() || out.len() >= MAX_VARIABLES {
            break;
        }
        let descs: Vec<BrowseDescription> = level
            .iter()
            .map(|(id, _)| BrowseDescription {
                node_id: id.clone(),
                browse_direction: BrowseDirection::Forward,
                reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                include_subtypes: true,
                node_class_mask: NodeClass::Object as u32 | NodeClass::Variable as u32,
                result_mask: BrowseResultMask::All as u32,
            })
            .collect();
        let results = tokio::time::timeout(timeout, session.browse(&descs, 1000, None))
            .await
            .map_err(|_| format!("no answer to the browse within {timeout:?}"))?
            .map_err(|e| format!("browse failed: {e}"))?;
        let mut next = Vec::new();
        for ((_, parent), r) in level.iter().zip(results) {
            for rd in r.references.unwrap_or_default() {
                let id = rd.node_id.node_id;
                if id.namespace == 0 {
                    continue; // the server's own objects (Server, diagnostics)
                }
                let name = rd.browse_name.name.to_string();
                let path = if parent.is_empty() {
                    name
                } else {
                    format!("{parent}/{name}")
                };
                match rd.node_class {
                    NodeClass::Variable if out.len() < MAX_VARIABLES => {
                        out.push((id.clone(), Some(path.clone())));
                        next.push((id, path));
                    }
                    NodeClass::Object => next.push((id, path)),
                    _ => {}
                }
            }
        }
        level = next;
    }
    Ok(out)
}
