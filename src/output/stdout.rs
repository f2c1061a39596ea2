//! Stdout sink: JSON lines on standard output (for `replay`, containers, piping into other tools).
//!
//! Ack meaning: the batch was written to file descriptor 1 and flushed. Nothing is known about what
//! the reader of the pipe does with it; a closed pipe (EPIPE) is an error and the shipper retries.

use std::io::Write;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::delivery::{Ack, Deliveries, Delivery};
use super::OutputFormat;

/// `[[output]] type = "stdout"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutConfig {
    pub name: Option<String>,
    pub format: OutputFormat,
    /// Most events per write + flush; also the delivery window.
    pub batch: usize,
}

impl Default for StdoutConfig {
    fn default() -> Self {
        StdoutConfig { name: None, format: OutputFormat::Native, batch: 512 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    #[error("stdout output: write: {0}")]
    Write(std::io::Error),
    #[error("stdout output: blocking task failed: {0}")]
    Join(String),
}

/// Write `batch` as JSON lines to `out` and flush.
pub fn write_lines(out: &mut impl Write, batch: &[Delivery]) -> std::io::Result<()> {
    for d in batch {
        out.write_all(d.body())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

pub async fn run(
    config: StdoutConfig,
    mut deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StdoutError> {
    let batch_max = config.batch.max(1);
    let mut batch: Vec<Delivery> = Vec::with_capacity(batch_max);
    loop {
        tokio::select! {
            biased;
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return Ok(());
                }
                continue;
            }
            d = deliveries.recv() => {
                let Some(d) = d else { return Ok(()) };
                batch.push(d);
                deliveries.take_waiting(&mut batch, batch_max);
            }
        }
        let work = std::mem::take(&mut batch);
        let (work, res) = tokio::task::spawn_blocking(move || {
            let res = write_lines(&mut std::io::stdout().lock(), &work);
            (work, res)
        })
        .await
        .map_err(|e| StdoutError::Join(e.to_string()))?;
        res.map_err(StdoutError::Write)?;
        if let Some(last) = work.last() {
            if acks.send(Ack(last.pos)).await.is_err() {
                return Ok(());
            }
        }
        batch = work;
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let d = |pos: u64, b: &str| Delivery::new(pos, 0, "i", b.as_bytes());
        let mut out = Vec::new();
        write_lines(&mut out, &[d(1, "{\"a\":1}"), d(2, "{}")]).unwrap();
        assert_eq!(out, b"{\"a\":1}\n{}\n");
    }
}
