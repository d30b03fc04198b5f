//! Fixture tests of the cgroup files.
