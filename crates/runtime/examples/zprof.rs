use airlock_runtime::{Language, RunRequest, Scheduler, SchedulerConfig};
use std::time::{Duration, Instant};
fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = Scheduler::new(SchedulerConfig { pool_size: 2, ..Default::default() });
        let r = RunRequest { language: Language::Python, code: b"import time, atexit, sys\nprint(1)\nsys.stderr.write(\"start %.3f\\n\" % (time.monotonic()*1000))\natexit.register(lambda: sys.stderr.write(\"exit %.3f\\n\" % (time.monotonic()*1000)))".to_vec(), ..Default::default() };
        s.prewarm(&r, 2, Duration::from_secs(60)).await.unwrap();
        let mut t = Vec::new();
        let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        for _ in 0..n {
            // let the pool refill
            while s.ready(&r) < 2 { tokio::time::sleep(Duration::from_millis(1)).await; }
            let a = Instant::now();
            let out = s.run(r.clone(), Box::new(|_, b| eprint!("{}", String::from_utf8_lossy(b)))).await.unwrap();
            t.push(a.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(out.stdout, "1\n");
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("p50 {:.2} p90 {:.2}", t[n / 2], t[n * 9 / 10]);
        s.shutdown().await;
    });
}
