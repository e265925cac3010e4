// SPDX-License-Identifier: GPL-2.0
/*
 * alphasmp_bench: the alphasmp kernel's benchmark suite, measured in Linux.
 *
 * `cargo xtask bench --linux` copies this file into arch/alpha/kernel/ of
 * an extracted Linux source tree, adds it there as obj-y, and boots the
 * result on the same QEMU command line as the alphasmp kernel's own
 * benchmark (arch/alpha/src/run/bench.rs). It runs as a late_initcall
 * (every CPU is online, nothing else runs: there is no userspace), prints
 * one `bench-result:` line per measurement in the alphasmp kernel's
 * format, so xtask's parser reads both, and powers the machine off.
 *
 * Boot arguments: alphasmp_bench=N (samples per measurement; without it
 * the file does nothing), alphasmp_bench_storm=R (storm rounds per CPU,
 * default 5000, the kernel's storm_rounds default), alphasmp_bench_only=NAME
 * (only that measurement, idle targets: what cargo xtask profile --linux
 * boots, counting the instructions between bench_window_open and
 * bench_window_close).
 *
 * Time: the issuing CPU's cycle counter (rpcc, 32 bits, wrap-safe for
 * each sample) converted with the HWRPB's cycle frequency, as the alphasmp
 * kernel does; a sample starts and ends on the same CPU. Long intervals
 * (throughput, storm) add up per-call deltas, so the 32-bit counter never
 * wraps inside one.
 *
 * The measuring thread (a kernel thread the initcall starts) is bound to
 * CPU 0; the target of single-target measurements is the next online CPU,
 * as in bench.rs.
 * Targets are "idle" (in Linux's idle loop, which waits in wtint, as the
 * alphasmp idle loop does) or "busy" (a kernel thread bound to the CPU,
 * spinning with interrupts enabled, i.e. at IPL 0 in task context, as
 * bench.rs's run_on_cpus spinners). Busy rounds spin on the target only
 * for single-target measurements, on every other CPU for the others.
 *
 * Under QEMU on a loaded host, a vCPU spinning in a loop often takes an
 * interrupt late (about 2 ms, two of Linux's ticks at HZ=1024; on a quiet
 * host within microseconds). Linux's busy targets wait for the IPI's
 * interrupt, so their rows show it when it happens. The alphasmp kernel's
 * busy targets poll their mailbox with ipi_poll=on (its default fix set)
 * and do not wait for it; with ipi_poll=off its ipi_rtt (busy) shows the
 * same 2 ms.
 *
 * How each shape matches the alphasmp kernel's:
 *
 *   ipi_rtt             ours: a PING message, waiting until the target's
 *                       IPI handler has counted it. Linux: a reschedule
 *                       IPI (arch_smp_send_reschedule), waiting until the
 *                       target's handle_ipi has counted it in
 *                       cpu_data[target].ipi_count. Both: one IPI, the
 *                       handler's message loop, no function call.
 *   call_single_wait    smp_call_function_single(target, noop, wait=1).
 *   call_single_nowait  smp_call_function_single(target, f, wait=0), then
 *                       spin until f has run (as ours: mark_ran).
 *   on_each_cpu_wait    on_each_cpu(noop, wait=1).
 *   flush_tlb_all       flush_tlb_all() (an on_each_cpu of tbia on Alpha).
 *   flush_tlb_mm        flush_tlb_mm() of an address space whose threads
 *                       run on every CPU: every thread of this benchmark
 *                       (the measuring one and each CPU's spinner) is a
 *                       kernel thread that adopts the space with
 *                       kthread_use_mm(), so a busy target runs it and takes
 *                       a new ASN (flush_tlb_current), as ours does. An
 *                       idle target runs its idle task (no mm) and drops
 *                       the ASN (ours skips a CPU asleep in its idle loop).
 *   flush_tlb_mm_unused flush_tlb_mm() of a space no CPU has run: Linux
 *                       still calls every other CPU (each drops an ASN it
 *                       does not have); ours sees from each CPU's context
 *                       word that none runs it and sends nothing.
 *   flush_tlb_page      flush_tlb_page() of one (data) page of the space
 *                       every CPU runs.
 *   flush_icache        flush_icache_user_page() of an executable mapping
 *                       of that space (a new ASN where it runs).
 *   shootdown_throughput  k CPUs (the first k online) issue samples/2
 *                       flush_tlb_page each, starting together; each times
 *                       itself; per_s = all shootdowns / the longest time.
 *   call_storm          every CPU makes R synchronous single calls at once,
 *                       target rotating over the others ((me + 1 + round %
 *                       (n - 1)) % n), as the kernel's self-test
 *                       xcall.concurrent_storm, which prints the time per
 *                       call per CPU: here elapsed_ns (the longest CPU's)
 *                       x cpus / n.
 *
 * The page-table free and walk rows of bench.rs have no Linux counterpart
 * here (free_always is ours modelling Linux); they are not measured.
 */

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/kstrtox.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/printk.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/sort.h>
#include <linux/utsname.h>

#include <asm/cacheflush.h>
#include <asm/hwrpb.h>
#include <asm/pal.h>
#include <asm/smp.h>
#include <asm/timex.h>
#include <asm/tlbflush.h>

static unsigned long bench_samples;
static unsigned long bench_storm_rounds = 5000;

static int __init bench_samples_setup(char *s)
{
	if (kstrtoul(s, 0, &bench_samples))
		pr_warn("alphasmp_bench: bad alphasmp_bench=%s\n", s);
	return 1;
}
__setup("alphasmp_bench=", bench_samples_setup);

static int __init bench_storm_setup(char *s)
{
	if (kstrtoul(s, 0, &bench_storm_rounds) || !bench_storm_rounds)
		bench_storm_rounds = 5000;
	return 1;
}
__setup("alphasmp_bench_storm=", bench_storm_setup);

/* alphasmp_bench_only=NAME: run only that measurement (idle targets). */
static char bench_only[32];

static int __init bench_only_setup(char *s)
{
	strscpy(bench_only, s, sizeof(bench_only));
	return 1;
}
__setup("alphasmp_bench_only=", bench_only_setup);

static bool selected(const char *name)
{
	return !bench_only[0] || !strcmp(bench_only, name);
}

/*
 * The profiling window (cargo xtask profile --linux): called right before
 * and right after a measurement's operations, as the alphasmp kernel's
 * bench does; out of line so that QEMU's instruction trace shows their
 * addresses.
 */
noinline void bench_window_open(void)
{
	asm volatile("" ::: "memory");
}

noinline void bench_window_close(void)
{
	asm volatile("" ::: "memory");
}

/* ---- Time ---------------------------------------------------------- */

static u64 cycle_hz;

static inline u32 now_cc(void)
{
	return get_cycles();
}

static inline u64 cc_to_ns(u64 cycles)
{
	return cycles * NSEC_PER_SEC / cycle_hz;
}

/* ---- The spaces the flushes name ---------------------------------- */

/*
 * run_mm: a real address space (mm_alloc) that every benchmark thread
 * adopts (kthread_use_mm), so it is the current mm of the measuring CPU
 * and of every busy target, as the alphasmp kernel's SPACE is on every
 * CPU. Two users, as a process with threads on other CPUs: a flush of it
 * always calls the other CPUs. Kept until power-off.
 *
 * unused_mm: never any CPU's mm: every flush of it goes to every other CPU,
 * which only drops its ASN (context[]).
 */
static struct mm_struct *run_mm;
static struct mm_struct unused_mm;
static struct vm_area_struct bench_vma;
static struct vm_area_struct bench_exec_vma;
#define BENCH_VA 0x120000000UL

/* ---- Operations ---------------------------------------------------- */

enum bench_op {
	OP_IPI_RTT,
	OP_CALL_SINGLE_WAIT,
	OP_CALL_SINGLE_NOWAIT,
	OP_ON_EACH_CPU_WAIT,
	OP_FLUSH_TLB_ALL,
	OP_FLUSH_TLB_MM,
	OP_FLUSH_TLB_MM_UNUSED,
	OP_FLUSH_TLB_PAGE,
	OP_FLUSH_ICACHE,
	OP_COUNT,
};

static const char *const op_names[OP_COUNT] = {
	[OP_IPI_RTT] = "ipi_rtt",
	[OP_CALL_SINGLE_WAIT] = "call_single_wait",
	[OP_CALL_SINGLE_NOWAIT] = "call_single_nowait",
	[OP_ON_EACH_CPU_WAIT] = "on_each_cpu_wait",
	[OP_FLUSH_TLB_ALL] = "flush_tlb_all",
	[OP_FLUSH_TLB_MM] = "flush_tlb_mm",
	[OP_FLUSH_TLB_MM_UNUSED] = "flush_tlb_mm_unused",
	[OP_FLUSH_TLB_PAGE] = "flush_tlb_page",
	[OP_FLUSH_ICACHE] = "flush_icache",
};

static bool op_single_target(enum bench_op op)
{
	return op == OP_IPI_RTT || op == OP_CALL_SINGLE_WAIT ||
	       op == OP_CALL_SINGLE_NOWAIT;
}

static int nowait_ran;

static void bench_noop(void *unused)
{
}

static void bench_mark_ran(void *unused)
{
	smp_store_release(&nowait_ran, 1);
}

/* One sample of @op from this CPU against @target, in cycles. */
static u32 bench_sample(enum bench_op op, int target)
{
	unsigned long before;
	u32 start = now_cc();

	switch (op) {
	case OP_IPI_RTT:
		before = READ_ONCE(cpu_data[target].ipi_count);
		arch_smp_send_reschedule(target);
		while (READ_ONCE(cpu_data[target].ipi_count) == before)
			cpu_relax();
		break;
	case OP_CALL_SINGLE_WAIT:
		smp_call_function_single(target, bench_noop, NULL, 1);
		break;
	case OP_CALL_SINGLE_NOWAIT:
		WRITE_ONCE(nowait_ran, 0);
		smp_call_function_single(target, bench_mark_ran, NULL, 0);
		while (!smp_load_acquire(&nowait_ran))
			cpu_relax();
		break;
	case OP_ON_EACH_CPU_WAIT:
		on_each_cpu(bench_noop, NULL, 1);
		break;
	case OP_FLUSH_TLB_ALL:
		flush_tlb_all();
		break;
	case OP_FLUSH_TLB_MM:
		flush_tlb_mm(run_mm);
		break;
	case OP_FLUSH_TLB_MM_UNUSED:
		flush_tlb_mm(&unused_mm);
		break;
	case OP_FLUSH_TLB_PAGE:
		flush_tlb_page(&bench_vma, BENCH_VA);
		break;
	case OP_FLUSH_ICACHE:
		flush_icache_user_page(&bench_exec_vma, NULL, BENCH_VA, 8);
		break;
	default:
		break;
	}
	return now_cc() - start;
}

/* ---- Kernel threads bound to CPUs ---------------------------------- */

/* What a group of bound threads does; one group at a time. */
struct group {
	u64 (*fn)(struct group *g, int cpu);
	atomic_t started;
	atomic_t finished;
	int members;
	int stop;
	struct completion all_done;
	/* Per-CPU results (cycles). */
	u64 elapsed[NR_CPUS];
	unsigned long per_cpu;
};

static int group_thread(void *arg)
{
	struct group *g = arg;
	int cpu = smp_processor_id();

	kthread_use_mm(run_mm);
	atomic_inc(&g->started);
	g->elapsed[cpu] = g->fn(g, cpu);
	kthread_unuse_mm(run_mm);
	if (atomic_inc_return(&g->finished) == g->members)
		complete(&g->all_done);
	return 0;
}

/*
 * Starts one thread of @g on each CPU of @mask. All are created before any
 * is woken: creating sleeps (kthreadd does it), and a woken member that
 * spins on a CPU where kthreadd or this thread must run next would wait
 * for ever on a kernel without preemption.
 */
static int group_start(struct group *g, const struct cpumask *mask)
{
	struct task_struct *threads[NR_CPUS];
	int cpu;

	atomic_set(&g->started, 0);
	atomic_set(&g->finished, 0);
	g->members = cpumask_weight(mask);
	g->stop = 0;
	init_completion(&g->all_done);
	for_each_cpu(cpu, mask) {
		g->elapsed[cpu] = 0;
		threads[cpu] = kthread_create(group_thread, g,
					      "alphasmp_bench/%d", cpu);
		if (IS_ERR(threads[cpu]))
			return PTR_ERR(threads[cpu]);
		kthread_bind(threads[cpu], cpu);
	}
	for_each_cpu(cpu, mask)
		wake_up_process(threads[cpu]);
	return 0;
}

/* Busy target: spin at IPL 0 in task context until told to stop. */
static u64 spin_fn(struct group *g, int cpu)
{
	while (!READ_ONCE(g->stop))
		cpu_relax();
	return 0;
}

static struct group group;

/* ---- Latency rounds ------------------------------------------------ */

static int errors;

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

static u64 pct(const u64 *sorted, unsigned long n, unsigned long p)
{
	unsigned long i = n * p / 100;

	return sorted[i < n ? i : n - 1];
}

static int next_cpu(int me)
{
	int cpu;

	for_each_online_cpu(cpu)
		if (cpu > me)
			return cpu;
	for_each_online_cpu(cpu)
		if (cpu != me)
			return cpu;
	return me;
}

static void measure(enum bench_op op, bool busy, u64 *v, unsigned long n)
{
	int me = smp_processor_id();
	int target = next_cpu(me);
	struct cpumask spinners;
	unsigned long i;

	cpumask_clear(&spinners);
	if (busy) {
		if (op_single_target(op))
			cpumask_set_cpu(target, &spinners);
		else
			cpumask_andnot(&spinners, cpu_online_mask,
				       cpumask_of(me));
		group.fn = spin_fn;
		if (group_start(&group, &spinners)) {
			errors++;
			return;
		}
		while (atomic_read(&group.started) < group.members)
			cpu_relax();
	}
	bench_window_open();
	for (i = 0; i < n; i++)
		v[i] = cc_to_ns(bench_sample(op, target));
	bench_window_close();
	if (busy) {
		WRITE_ONCE(group.stop, 1);
		wait_for_completion(&group.all_done);
	}
	sort(v, n, sizeof(*v), cmp_u64, NULL);
	pr_info("bench-result: name=%s target=%s cpus=%u n=%lu median_ns=%llu p90_ns=%llu p99_ns=%llu min_ns=%llu max_ns=%llu\n",
		op_names[op], busy ? "busy" : "idle", num_online_cpus(), n,
		pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), v[0], v[n - 1]);
}

/* ---- Throughput and storm ------------------------------------------ */

static atomic_t ready;

static void wait_ready(struct group *g)
{
	atomic_inc(&ready);
	while (atomic_read(&ready) < g->members)
		cpu_relax();
}

static u64 issuer_fn(struct group *g, int cpu)
{
	u64 total = 0;
	unsigned long i;
	u32 t;

	wait_ready(g);
	t = now_cc();
	for (i = 0; i < g->per_cpu; i++) {
		u32 now;

		flush_tlb_page(&bench_vma, BENCH_VA);
		now = now_cc();
		total += (u32)(now - t);
		t = now;
	}
	return total;
}

static atomic_t storm_hits;

static void storm_hit(void *unused)
{
	atomic_inc(&storm_hits);
}

static u64 storm_fn(struct group *g, int cpu)
{
	int n = num_online_cpus();
	u64 total = 0;
	unsigned long round;
	u32 t;

	wait_ready(g);
	t = now_cc();
	for (round = 0; round < g->per_cpu; round++) {
		int target = (cpu + 1 + (int)(round % (n - 1))) % n;
		u32 now;

		smp_call_function_single(target, storm_hit, NULL, 1);
		now = now_cc();
		total += (u32)(now - t);
		t = now;
	}
	return total;
}

/*
 * Runs @fn on the first @k online CPUs, @per calls each; returns the
 * longest CPU's time in ns.
 */
static u64 run_group(u64 (*fn)(struct group *, int), int k,
		     unsigned long per)
{
	struct cpumask mask;
	u64 longest = 1;
	int cpu, taken = 0;

	cpumask_clear(&mask);
	for_each_online_cpu(cpu)
		if (taken++ < k)
			cpumask_set_cpu(cpu, &mask);
	atomic_set(&ready, 0);
	group.fn = fn;
	group.per_cpu = per;
	if (group_start(&group, &mask)) {
		errors++;
		return 1;
	}
	/* Sleeping here frees this CPU for its own group thread. */
	bench_window_open();
	wait_for_completion(&group.all_done);
	bench_window_close();
	for_each_cpu(cpu, &mask)
		longest = max(longest, cc_to_ns(group.elapsed[cpu]));
	return longest;
}

/* ---- The suite ----------------------------------------------------- */

static u64 *latency_v;
static unsigned long latency_n;
static struct completion latency_done;

/* Every latency round, from CPU 0, in a thread that runs run_mm. */
static int latency_thread(void *unused)
{
	int op;

	kthread_use_mm(run_mm);
	for (op = 0; op < OP_COUNT; op++) {
		if (!selected(op_names[op]))
			continue;
		measure(op, false, latency_v, latency_n);
		if (!bench_only[0])
			measure(op, true, latency_v, latency_n);
	}
	kthread_unuse_mm(run_mm);
	complete(&latency_done);
	return 0;
}

static int __init alphasmp_bench(void)
{
	unsigned long n = bench_samples;
	unsigned int cpus = num_online_cpus();
	struct task_struct *measurer;
	u64 *v;
	int k;

	if (!n)
		return 0;
	cycle_hz = hwrpb->cycle_freq ? hwrpb->cycle_freq : 250000000;
	pr_info("bench: %u CPU(s), %lu samples per measurement (Linux %s, cycle counter %llu Hz)\n",
		cpus, n, init_utsname()->release, cycle_hz);
	if (cpus < 2) {
		pr_info("alphasmp: FAIL (bench needs 2 or more CPUs)\n");
		goto off;
	}
	/* Measure from CPU 0, as the alphasmp kernel's boot CPU does. */
	set_cpus_allowed_ptr(current, cpumask_of(0));
	v = kmalloc_array(n, sizeof(*v), GFP_KERNEL);
	if (!v) {
		pr_info("alphasmp: FAIL (no memory for %lu samples)\n", n);
		goto off;
	}
	run_mm = mm_alloc();
	if (!run_mm) {
		pr_info("alphasmp: FAIL (no memory for an address space)\n");
		goto off;
	}
	mmget(run_mm);
	atomic_set(&unused_mm.mm_users, 2);
	bench_vma.vm_mm = run_mm;
	vm_flags_init(&bench_vma, VM_READ);
	bench_exec_vma.vm_mm = run_mm;
	vm_flags_init(&bench_exec_vma, VM_EXEC | VM_READ);

	/* The latency rounds run in a kernel thread on CPU 0 that runs run_mm. */
	latency_v = v;
	latency_n = n;
	init_completion(&latency_done);
	measurer = kthread_create(latency_thread, NULL, "alphasmp_bench/m");
	if (IS_ERR(measurer)) {
		pr_info("alphasmp: FAIL (no measuring thread)\n");
		goto off;
	}
	kthread_bind(measurer, 0);
	wake_up_process(measurer);
	wait_for_completion(&latency_done);
	kfree(v);

	for (k = 1; k <= cpus && selected("shootdown_throughput"); k++) {
		unsigned long per = max(n / 2, 1UL);
		u64 total = per * k;
		u64 ns = run_group(issuer_fn, k, per);

		pr_info("bench-result: name=shootdown_throughput issuers=%d cpus=%u n=%llu elapsed_ns=%llu per_s=%llu\n",
			k, cpus, total, ns, total * NSEC_PER_SEC / ns);
	}

	if (selected("call_storm")) {
		u64 calls = bench_storm_rounds * cpus;
		int before = atomic_read(&storm_hits);
		u64 ns = run_group(storm_fn, cpus, bench_storm_rounds);
		int hits = atomic_read(&storm_hits) - before;

		if (hits != calls)
			errors++;
		pr_info("bench-result: name=call_storm issuers=%u cpus=%u n=%llu elapsed_ns=%llu per_s=%llu\n",
			cpus, cpus, calls, ns, calls * NSEC_PER_SEC / ns);
	}

	if (errors)
		pr_info("alphasmp: FAIL (%d measurements failed)\n", errors);
	else
		pr_info("alphasmp: PASS (benchmark reported)\n");
off:
	machine_power_off();
	/* Not reached where the power-off halts; else end here. */
	halt();
	return 0;
}
late_initcall(alphasmp_bench);
