//! Measurements of other implementations, read from the JSON lines the peers script
//! (`shared/peers/bench_peers.py --json`) writes, to stand beside ours.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// One peer's median throughput on one layer at one thread count.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerResult {
    pub layer: String,
    pub threads: u64,
    pub peer: String,
    pub gflops: f64,
}

/// Peer results by `(layer, threads)`, the peers in the order the file first names them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peers {
    /// Peer names in order of first appearance.
    pub names: Vec<String>,
    results: BTreeMap<(String, u64), BTreeMap<String, f64>>,
}

impl Peers {
    /// Reads a JSON-lines file; a line that is not a measurement names its line number.
    /// Lines of the peer `gconv` (our own earlier runs) are kept as `gconv (earlier)`.
    pub fn load(path: &Path) -> Result<Peers> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read peers file {}", path.display()))?;
        Peers::parse(&text).with_context(|| format!("in peers file {}", path.display()))
    }

    fn parse(text: &str) -> Result<Peers> {
        let mut peers = Peers::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let result = parse_line(line).with_context(|| format!("line {}", index + 1))?;
            if !peers.names.contains(&result.peer) {
                peers.names.push(result.peer.clone());
            }
            // A later line for the same measurement replaces an earlier one (a re-run).
            peers
                .results
                .entry((result.layer, result.threads))
                .or_default()
                .insert(result.peer, result.gflops);
        }
        ensure!(!peers.names.is_empty(), "it holds no measurements");
        Ok(peers)
    }

    /// `peer`'s GFLOP/s on `layer` at `threads`, if measured.
    pub fn gflops(&self, layer: &str, threads: u64, peer: &str) -> Option<f64> {
        self.results
            .get(&(layer.to_string(), threads))?
            .get(peer)
            .copied()
    }

    /// The fastest peer on `layer` at `threads`, with its GFLOP/s.
    pub fn best(&self, layer: &str, threads: u64) -> Option<(&str, f64)> {
        self.results
            .get(&(layer.to_string(), threads))?
            .iter()
            .filter(|(peer, _)| !peer.starts_with("gconv"))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(peer, &gflops)| (peer.as_str(), gflops))
    }
}

fn parse_line(line: &str) -> Result<PeerResult> {
    let value: Value = serde_json::from_str(line).context("not a JSON object")?;
    let text = |key: &str| {
        value[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("'{key}' is missing or not a string"))
    };
    let threads = value["threads"]
        .as_u64()
        .context("'threads' is missing or not a non-negative integer")?;
    let gflops = value["gflops"]
        .as_f64()
        .filter(|gflops| gflops.is_finite() && *gflops >= 0.0)
        .context("'gflops' is missing or not a non-negative number")?;
    let mut peer = text("peer")?;
    if peer == "gconv" {
        peer = "gconv (earlier)".to_string();
    }
    Ok(PeerResult {
        layer: text("layer")?,
        threads,
        peer,
        gflops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = r#"{"suite": "layers", "layer": "a.x", "threads": 1, "peer": "torch", "median_us": 10.0, "gflops": 5.0, "numerics_ok": true}
{"suite": "layers", "layer": "a.x", "threads": 1, "peer": "ort", "median_us": 5.0, "gflops": 10.0}
{"suite": "layers", "layer": "a.x", "threads": 2, "peer": "ort", "median_us": 3.0, "gflops": 16.0}

{"suite": "published", "layer": "a.x", "threads": 1, "peer": "gconv", "median_us": 2.0, "gflops": 25.0}
"#;

    #[test]
    fn reads_the_peers_format_and_finds_the_best_peer() {
        let peers = Peers::parse(LINES).unwrap();
        assert_eq!(peers.names, ["torch", "ort", "gconv (earlier)"]);
        assert_eq!(peers.gflops("a.x", 1, "torch"), Some(5.0));
        assert_eq!(peers.gflops("a.x", 2, "torch"), None);
        // Our own earlier run is shown, but is no peer to compare with.
        assert_eq!(peers.best("a.x", 1), Some(("ort", 10.0)));
        assert_eq!(peers.best("a.x", 2), Some(("ort", 16.0)));
        assert_eq!(peers.best("b.y", 1), None);
    }

    #[test]
    fn a_bad_line_is_named() {
        let text = format!("{LINES}{{\"layer\": \"a.x\", \"threads\": 1, \"peer\": \"ov\"}}\n");
        let error = format!("{:#}", Peers::parse(&text).unwrap_err());
        assert_eq!(
            error,
            "line 6: 'gflops' is missing or not a non-negative number"
        );
        let error = format!("{:#}", Peers::parse("not json\n").unwrap_err());
        assert!(error.starts_with("line 1: not a JSON object"), "{error}");
        assert!(Peers::parse("\n\n").is_err());
    }
}
