//! (placeholder until the pressure watch lands)
#[derive(clap::Args, serde::Serialize, Clone, Debug)]
pub struct PressureConfig {
    #[arg(long, default_value_t = 0.9)]
    pub pressure_limit_fraction: f64,
}
pub struct PressureWatch;
impl PressureWatch {
    pub fn new(_config: &PressureConfig, _pid: u32) -> PressureWatch {
        PressureWatch
    }
    pub fn check(&mut self) -> Option<String> {
        None
    }
}
