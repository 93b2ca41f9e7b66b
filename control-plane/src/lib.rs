//! Remora control plane.
