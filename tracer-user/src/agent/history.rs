//! (placeholder until the history module lands)
#[derive(clap::Args, serde::Serialize, Clone, Debug)]
pub struct HistoryConfig {
    #[arg(long)]
    pub no_history: bool,
}
pub enum Kind {
    Interval,
    Pressure(String),
}
pub struct History;
impl History {
    pub fn open(_config: &HistoryConfig) -> crate::Result<History> {
        Ok(History)
    }
    pub fn record(
        &mut self,
        _target_id: &str,
        _labels: &[(&'static str, String)],
        _snapshot: &crate::Snapshot,
        _kind: Kind,
    ) -> crate::Result<()> {
        Ok(())
    }
    pub fn disk_usage(&self) -> u64 {
        0
    }
}
