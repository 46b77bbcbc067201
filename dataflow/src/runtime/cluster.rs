//! Where the workers of a runtime run: all in this process, or this process's share of a
//! cluster of processes that timely connects over TCP (`Config::Cluster`).
//!
//! Timely numbers the workers of a cluster `0..processes * threads`, process by process: the
//! workers of process `p` are `p * threads .. (p + 1) * threads`. Every process must be given
//! the same addresses and threads, and must build the same dataflows in the same order.

use std::ops::Range;

/// One process's place in a cluster: the addresses of every process (this one's included, in
/// the cluster's order), this process's index among them, and the worker threads of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This process's index in `addresses`.
    pub process: usize,
    /// `host:port` of every process; each listens on its own and connects to the others.
    pub addresses: Vec<String>,
    /// Worker threads per process (the same in every process).
    pub threads: usize,
}

impl ClusterConfig {
    /// Checks that the description is one timely can run.
    pub fn validate(&self) -> Result<(), String> {
        if self.addresses.is_empty() {
            return Err("a cluster needs the address of at least one process".into());
        }
        if self.process >= self.addresses.len() {
            return Err(format!(
                "process index {} is not below the {} addresses of the cluster",
                self.process,
                self.addresses.len()
            ));
        }
        if self.threads == 0 {
            return Err("a cluster process needs at least one worker thread".into());
        }
        Ok(())
    }
}

/// Where the workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `n` workers, all in this process.
    Process(usize),
    /// This process's workers of a cluster.
    Cluster(ClusterConfig),
}

impl Placement {
    /// Workers over all processes: the range of timely's worker indexes.
    pub fn peers(&self) -> usize {
        match self {
            Placement::Process(n) => *n,
            Placement::Cluster(c) => c.addresses.len() * c.threads,
        }
    }

    /// The indexes of this process's workers.
    pub fn local(&self) -> Range<usize> {
        match self {
            Placement::Process(n) => 0..*n,
            Placement::Cluster(c) => c.process * c.threads..(c.process + 1) * c.threads,
        }
    }

    /// The timely configuration. In a cluster, workers of one process still exchange by
    /// pointer (`zerocopy: false` keeps timely's typed in-process channels); only messages for
    /// other processes are serialised.
    pub fn timely(&self) -> timely::Config {
        match self {
            Placement::Process(n) => timely::Config::process(*n),
            Placement::Cluster(c) => timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: c.threads,
                    process: c.process,
                    addresses: c.addresses.clone(),
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(process: usize, processes: usize, threads: usize) -> ClusterConfig {
        ClusterConfig {
            process,
            addresses: (0..processes)
                .map(|i| format!("127.0.0.1:{}", 7000 + i))
                .collect(),
            threads,
        }
    }

    #[test]
    fn a_process_owns_its_threads_worth_of_global_indexes() {
        let p = Placement::Cluster(cluster(1, 3, 2));
        assert_eq!(p.peers(), 6);
        assert_eq!(p.local(), 2..4);
        let one = Placement::Process(4);
        assert_eq!((one.peers(), one.local()), (4, 0..4));
    }

    #[test]
    fn a_cluster_description_is_checked() {
        assert!(cluster(0, 2, 1).validate().is_ok());
        assert!(cluster(2, 2, 1).validate().is_err());
        assert!(cluster(0, 2, 0).validate().is_err());
        assert!(cluster(0, 0, 1).validate().is_err());
    }

    #[test]
    fn a_cluster_maps_to_timely_cluster_communication() {
        let config = Placement::Cluster(cluster(1, 2, 3)).timely();
        match config.communication {
            timely::CommunicationConfig::Cluster {
                threads,
                process,
                addresses,
                zerocopy,
                ..
            } => {
                assert_eq!((threads, process, addresses.len()), (3, 1, 2));
                assert!(!zerocopy);
            }
            other => panic!("not a cluster config: {other:?}"),
        }
    }
}
