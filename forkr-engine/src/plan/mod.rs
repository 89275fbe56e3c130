//! Plans: desired state against observed state.
