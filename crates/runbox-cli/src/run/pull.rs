//! The progress bar of a backend's long preparations (image pulls) on
//! stderr (hidden when stderr is not a terminal).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use orchestrator_core::ProgressEvent;

/// Renders a backend's progress events (image pulls) as a progress bar on
/// stderr (hidden when stderr is not a terminal).
#[derive(Default)]
pub struct PullBar {
    state: Mutex<PullState>,
}

#[derive(Default)]
struct PullState {
    bar: Option<indicatif::ProgressBar>,
    layers: BTreeMap<String, (u64, u64)>,
}

impl PullBar {
    pub fn on_event(&self, ev: &ProgressEvent) {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let bar = st.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} pulling {msg} {wide_bar} {bytes}/{total_bytes}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(format!("{}: {}", ev.task, ev.status));
        if let (Some(layer), Some(cur)) = (&ev.item, ev.current) {
            let total = ev.total.unwrap_or(0);
            st.layers.insert(layer.clone(), (cur, total));
            let (c, t) = st
                .layers
                .values()
                .fold((0u64, 0u64), |(a, b), (c, t)| (a + c, b + t));
            if let Some(bar) = &st.bar {
                bar.set_length(t);
                bar.set_position(c);
            }
        }
    }

    /// Clears the bar (if one was drawn).
    pub fn finish(&self) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(bar) = st.bar.take() {
                bar.finish_and_clear();
            }
        }
    }
}
