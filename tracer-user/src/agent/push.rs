//! (placeholder until the pusher lands)
#[derive(clap::Args, serde::Serialize, Clone, Debug)]
pub struct PushConfig {
    #[arg(long)]
    pub push_url: Option<String>,
}
pub struct PushProfile {
    pub name: &'static str,
    pub labels: Vec<(String, String)>,
    pub pprof_gz: Vec<u8>,
}
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PushStats {
    pub sent: u64,
    pub dropped: u64,
    pub failed_attempts: u64,
    pub queued: u64,
}
pub struct Pusher;
impl Pusher {
    pub fn start(_config: &PushConfig) -> crate::Result<Option<Pusher>> {
        Ok(None)
    }
    pub fn push(&self, _profile: PushProfile) {}
    pub fn stats(&self) -> PushStats {
        PushStats::default()
    }
    pub fn shutdown(self, _within: std::time::Duration) -> PushStats {
        PushStats::default()
    }
}
