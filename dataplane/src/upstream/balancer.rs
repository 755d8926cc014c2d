//! Load balancing (sans-IO): which endpoint of a cluster gets the next
//! request. Round robin for now; the resilience work adds weighted, least
//! request, ring hash and maglev behind the same per-shard state.

/// Per-shard round-robin cursors, one per cluster of the current snapshot.
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursors: Vec<usize>,
}

impl RoundRobin {
    /// Resets the cursors for a snapshot with `clusters` clusters.
    pub fn reset(&mut self, clusters: usize) {
        self.cursors.clear();
        self.cursors.resize(clusters, 0);
    }

    /// The index of the next endpoint of cluster `cluster` among `endpoints`
    /// (`None` when the cluster has no endpoint). `start` offsets the first
    /// pick so that shards do not all begin at endpoint 0.
    pub fn pick(&mut self, cluster: usize, endpoints: usize, start: usize) -> Option<usize> {
        if endpoints == 0 {
            return None;
        }
        if cluster >= self.cursors.len() {
            self.cursors.resize(cluster + 1, 0);
        }
        let cursor = &mut self.cursors[cluster];
        let index = (*cursor + start) % endpoints;
        *cursor = cursor.wrapping_add(1);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_endpoints_evenly() {
        let mut rr = RoundRobin::default();
        rr.reset(2);
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            counts[rr.pick(1, 3, 0).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn clusters_have_independent_cursors_and_start_offsets() {
        let mut rr = RoundRobin::default();
        rr.reset(2);
        assert_eq!(rr.pick(0, 2, 1), Some(1));
        assert_eq!(rr.pick(1, 2, 0), Some(0));
        assert_eq!(rr.pick(0, 2, 1), Some(0));
        assert_eq!(rr.pick(0, 0, 0), None);
    }
}
