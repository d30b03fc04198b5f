//! FakeOrchestrator (being written).
