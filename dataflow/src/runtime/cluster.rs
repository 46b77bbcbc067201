//! Where the workers of a runtime run: all in this process, or this process's share of a
//! cluster of processes connected over TCP (`Config::Cluster`, through `connect.rs`).
//!
//! Timely numbers the workers of a cluster `0..processes * threads`, process by process: the
//! workers of process `p` are `p * threads .. (p + 1) * threads`. Every process must be given
//! the same addresses and threads, and must build the same dataflows in the same order.

use std::any::Any;
use std::ops::Range;

use timely::communication::allocator::ProcessBuilder;
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::{AllocatorBuilder, Hooks};

/// Timely's allocator builders, one per local worker, and what they need kept alive.
pub type Allocators = (Vec<AllocatorBuilder>, Box<dyn Any + Send>);

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

    /// Timely's allocators for this process's workers, and what must live as long as they do
    /// (a cluster's network threads). In a cluster, workers of one process still exchange by
    /// pointer (timely's typed in-process channels, as `zerocopy: false`); only messages for
    /// other processes are serialised, over connections made by [`super::connect`] (timely's
    /// handshake, with keepalive and a user timeout) instead of timely's plain ones.
    pub fn allocators(&self) -> Result<Allocators, String> {
        match self {
            Placement::Process(n) => timely::CommunicationConfig::Process(*n).try_build(),
            Placement::Cluster(c) => {
                let sockets = super::connect::connect(&c.addresses, c.process)
                    .map_err(|e| format!("failed to connect the cluster's processes: {e}"))?;
                let hooks = Hooks::default();
                let local = ProcessBuilder::new_typed_vector(
                    c.threads,
                    hooks.refill.clone(),
                    hooks.spill.clone(),
                );
                let (builders, network) =
                    initialize_networking_from_sockets(local, sockets, c.process, c.threads, hooks)
                        .map_err(|e| format!("failed to initialize networking: {e}"))?;
                let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
                Ok((builders, Box::new(network)))
            }
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
    fn a_process_s_workers_get_allocators_for_every_worker_of_the_cluster() {
        let addresses: Vec<String> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("an address").to_string()
            })
            .collect();
        let other = {
            let addresses = addresses.clone();
            std::thread::spawn(move || {
                let p = Placement::Cluster(ClusterConfig {
                    process: 1,
                    addresses,
                    threads: 2,
                });
                let (builders, network) = p.allocators()?;
                let n = builders.len();
                // Never built into workers, the network threads would wait for them forever.
                std::mem::forget((builders, network));
                Ok::<_, String>(n)
            })
        };
        let p = Placement::Cluster(ClusterConfig {
            process: 0,
            addresses,
            threads: 2,
        });
        let (builders, network) = p.allocators().expect("connected");
        assert_eq!(builders.len(), 2);
        assert!(
            builders
                .iter()
                .all(|b| matches!(b, AllocatorBuilder::Tcp(_)))
        );
        assert_eq!(other.join().unwrap(), Ok(2));
        std::mem::forget((builders, network));
        let (builders, _) = Placement::Process(3).allocators().expect("allocators");
        assert_eq!(builders.len(), 3);
    }
}
