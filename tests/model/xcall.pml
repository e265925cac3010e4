/*
 * The synchronous cross-call protocol of src/xcall.rs, for the spin model
 * checker. Each CPU makes one synchronous call to the next CPU in a ring
 * (0 -> 1 -> ... -> 0), then idles taking interrupts for ever, as the kernel
 * does. Compile-time switches select the faults and fixes:
 *
 *   NCPU=n     number of CPUs (2 or 3)
 *   LOSSY      EV7 line: an IPI sent while the target is inside an
 *              interrupt handler is dropped (else: clipper latch)
 *   LOSSY_MASKED  EV7 line losing the edge whenever IPL 7 masks it
 *              (the kernel's inject=edge_loss_masked): an IPI sent while
 *              the target is at IPL 7 for any reason is dropped, the
 *              mailbox bit staying set: inside a handler (as LOSSY), and
 *              outside one: napping in a wait (NAP), waiting masked
 *              (MASKED), idle in wtint (IDLENAP). Supersedes LOSSY.
 *   OUTSIDE_ONLY  with LOSSY_MASKED: only the losses outside handlers
 *              (those LOSSY cannot make), as if handlers were too short to
 *              be hit: what napping, masked waits and idle wtint add alone
 *   MASKED     the caller waits with interrupts masked (IPL 7)
 *   LOCK       the series' lock-and-drain fix: one lock around the call; a CPU that cannot
 *              take it drains its own mailbox (interrupts off) and retries
 *   POLL       the series' in-interrupt poll: every tick handler polls the mailbox
 *   NAP        waiters nap (wait=nap, src/xcall.rs "Napping waiters"): at
 *              IPL 7 a waiter sets its napping flag, re-checks, and waits
 *              until an interrupt is pending; whoever completes its call
 *              wakes it with an IPI (lost like any IPI under LOSSY, and
 *              always under LOSSY_MASKED: a napper is at IPL 7); the
 *              clock's next interrupt also ends the nap
 *   ADAPTIVE   with NAP: each iteration of a wait may spin at IPL 0
 *              instead of napping (wait=adaptive chooses by the wait's age
 *              and how many CPUs are awake; the model lets it choose
 *              anything)
 *   NOTICK     with NAP: no clock bound, only an IPI ends a nap (what a
 *              wtint without a periodic interrupt would do)
 *   CENSUS     the census of IPI delivery (src/census.rs), checked as a
 *              safety property instead of the liveness one: each call's
 *              IPI request is numbered before its bit is posted and
 *              counted as issued after it went out (or was dropped; the
 *              drop is marked, the model's ground truth); an IPI interrupt
 *              serves every request numbered so far; each tick judges the
 *              requests issued before the previous tick and not served as
 *              stranded, counting the marked drops among them as
 *              unannounced. Asserted at every judgement: stranded ==
 *              unannounced (the census blames no edge that arrived and
 *              misses no drop that no later edge covered)
 *   WITNESS    with CENSUS: also assert that nothing is ever stranded, so
 *              that spin finds a run where the census does strand a request
 *              (the census is not silent)
 *   RECOVER    the recovery between experiment cells (src/recover.rs),
 *              checked as a safety property: a waiter (spinning, not NAP)
 *              may give up at any moment, as the watchdog's abort makes it,
 *              leaving its call queued; once every CPU's program has
 *              returned, a recovery visits each CPU and, with IPIs held
 *              off, takes its mailbox bit and runs its whole queue. Asserted
 *              after it: no mailbox bit and no queued call is left, and
 *              every call ran exactly once (a call run twice or never
 *              would be a leak into the next cell)
 *   RWITNESS   with RECOVER: also assert that the recovery never runs a
 *              call, so that spin finds a run where it does
 *   IDLENAP    a CPU that finished its call idles as the kernel's idle
 *              loop does: at IPL 7 in wtint until an interrupt is pending
 *              (an IPI, or the clock's next interrupt), then back at IPL 0
 *              where it is taken (else: it idles at IPL 0 taking
 *              interrupts); the idle poll is left out, since the tick that
 *              ends the nap polls first (POLL)
 *
 * Modelled faithfully: the CALL bit is set before the IPI, an IPI is sent
 * only when the target's queue goes from empty to non-empty, the handler
 * takes the mailbox bit and then the whole queue, and runs every queued
 * call (completing its caller's wait). Ticks arrive at any time the CPU is
 * not masked and not already in a handler, for ever (weak fairness makes
 * each CPU's interrupt process take steps when it can).
 *
 * Property (checked with ./pan -a -f): every CPU finishes its call
 * (CENSUS and RECOVER check their own assertions instead, below).
 *   #ifndef CENSUS
ltl finish { <> (finished == NCPU) }
#endif
 * A violation is a run in which some caller waits for ever: a deadlock.
 *
 * A CPU's program steps may interleave with its own interrupt handler's
 * steps (an over-approximation: it only adds behaviours). Requiring the
 * program to wait for the handler instead lets an endless stream of ticks
 * starve the program, which weak fairness cannot exclude, and every
 * configuration would "deadlock"; real ticks are short and periodic.
 *
 * Assumes: one call per CPU (more calls only repeat the same patterns);
 * the drain loop's take-bit/take-queue steps are separate, a lock drain is
 * one atomic step (it runs with interrupts off); the watchdog re-send is not
 * modelled: a re-sent IPI can be lost again in a handler window, so it
 * guarantees completion only with probability 1, not in every run, which
 * this model (without probabilities) cannot express. The QEMU matrix shows
 * both outcomes. A CPU waiting for the lock (LOCK) spins at IPL 0 here; the
 * kernel's, under NAP, naps at IPL 7 between tries, where LOSSY_MASKED
 * loses the releaser's wake too, but it drains its mailbox at every try,
 * so that costs a tick, not a call (tests/sim_nap.rs runs that case).
 */

#ifndef NCPU
#define NCPU 2
#endif

bool mailbox[NCPU];      /* CALL_FUNCTION bit of each CPU */
byte queued[NCPU];       /* bit i: caller i's descriptor is in this CPU's queue */
bool line[NCPU];         /* interrupt request latched for this CPU */
bool in_handler[NCPU];   /* inside an interrupt handler at IPL 7 */
bool masked[NCPU];       /* IPIs and ticks held off: at IPL 7 */
bool done[NCPU];         /* caller i's call has run (its wait ends) */
bool napping[NCPU];      /* caller i naps in its wait (NAP) */
bool clock[NCPU];        /* a clock interrupt is pending (it ended a nap) */
byte lock = 0;           /* 0: free; else 1 + owner */
byte finished = 0;
#ifdef RECOVER
byte runs[NCPU];         /* times caller i's call ran */
#endif
byte lost = 0;           /* IPIs dropped (LOSSY, LOSSY_MASKED) */
#ifdef CENSUS
byte req[NCPU];          /* requests numbered for this CPU */
byte sent[NCPU];         /* ... issued (or dropped) */
byte served[NCPU];       /* highest number an IPI interrupt served */
byte judged[NCPU];       /* highest number a tick judged */
byte satclk[NCPU];       /* `sent` at this CPU's previous tick */
byte stranded[NCPU];
byte unann[NCPU];        /* judged requests that were dropped */
byte drops[NCPU];        /* bit n: request n was dropped */
#endif

/* The requests numbered lo+1 ..= hi as a bit mask. */
#define RANGE(lo, hi) (((1 << ((hi) + 1)) - 1) & ~((1 << ((lo) + 1)) - 1))

/* Marks request n (0: a wake, not counted) to CPU t as dropped. */
inline mark_drop(t, n) {
#ifdef CENSUS
  if
  :: n > 0 -> drops[t] = drops[t] | (1 << n)
  :: else -> skip
  fi
#else
  skip
#endif
}

inline wripir(t, n) {
  atomic {
#ifdef LOSSY_MASKED
    if
#ifndef OUTSIDE_ONLY
    :: in_handler[t] -> lost++; mark_drop(t, n); printf("MSC: IPI to CPU %d LOST (in a handler)\n", t)
#endif
    :: !in_handler[t] && masked[t] -> lost++; mark_drop(t, n); printf("MSC: IPI to CPU %d LOST (at IPL 7 outside a handler)\n", t)
    :: else -> line[t] = 1
    fi
#else
#ifdef LOSSY
    if
    :: in_handler[t] -> lost++; mark_drop(t, n); printf("MSC: IPI to CPU %d LOST (in a handler)\n", t)
    :: else -> line[t] = 1
    fi
#else
    line[t] = 1
#endif
#endif
  }
}

#ifdef CENSUS
/* max(served, judged) of CPU c into lo. */
inline census_lo(c) {
  if
  :: served[c] >= judged[c] -> lo = served[c]
  :: else -> lo = judged[c]
  fi
}

/* At an IPI interrupt's entry: serve every request numbered so far. The
   kernel reads `req` at the entry and does this bookkeeping after its
   drain (src/census.rs, Census::serve); the words it touches are this
   CPU's alone and nothing in between changes them (no rescue in the
   drain, no tick inside the handler: the tick is this same process), so
   the one atomic step here covers every run of the two. */
inline census_serve(c) {
  census_lo(c);
  if
  :: req[c] > lo -> drops[c] = drops[c] & ~RANGE(lo, req[c]); served[c] = req[c]
  :: else -> skip
  fi
}

/* At a tick: judge the requests issued before the previous tick. */
inline census_judge(c) {
  census_lo(c);
  if
  :: satclk[c] > lo ->
     stranded[c] = stranded[c] + satclk[c] - lo;
     k = lo + 1;
     do
     :: k <= satclk[c] ->
        if
        :: drops[c] & (1 << k) -> unann[c]++; drops[c] = drops[c] & ~(1 << k)
        :: else -> skip
        fi;
        k++
     :: else -> break
     od;
     judged[c] = satclk[c]
  :: else -> skip
  fi;
  satclk[c] = sent[c];
  assert(stranded[c] == unann[c]);
#ifdef WITNESS
  assert(stranded[c] == 0)
#endif
}
#endif

/* Run every call in `c`'s queue: each completes its caller's wait. */
inline run_queue(c) {
  atomic {
    i = 0;
    do
    :: i < NCPU ->
       if
       :: queued[c] & (1 << i) -> done[i] = 1; printf("MSC: CPU %d runs the call of CPU %d\n", c, i);
#ifdef RECOVER
          runs[i]++;
#endif
#ifdef NAP
          if
          /* The first waker to find it napping claims the wake. */
          :: napping[i] -> napping[i] = 0; wripir(i, 0); printf("MSC: CPU %d wakes CPU %d\n", c, i)
          :: else -> skip
          fi
#endif
       :: else -> skip
       fi;
       i++
    :: else -> break
    od;
    queued[c] = 0
  }
}

/* The IPI handler's loop: take the bit, then the queue, until no bit. */
inline drain(c) {
  do
  :: atomic { mailbox[c] -> mailbox[c] = 0 };
     run_queue(c)
  :: atomic { !mailbox[c] -> break }
  od
}

proctype interrupts(byte c) {
  byte i;
#ifdef CENSUS
  byte lo, k;
#endif
  do
  :: atomic { !masked[c] && !in_handler[c] && line[c] -> line[c] = 0; in_handler[c] = 1;
#ifdef CENSUS
       census_serve(c)
#endif
     };
     drain(c);
     in_handler[c] = 0
  /* A clock tick; a pending IPI outranks it (IPIs sit above the clock). */
#if !defined(POLL) && !defined(CENSUS) && !defined(LOSSY) && !defined(LOSSY_MASKED)
  /* A tick that does nothing inside is one step. Sound, not an
     approximation: only the lossy lines read another CPU's in_handler,
     and only this process reads its own, so the step that clears it
     commutes with every other process's steps and can be moved up to the
     step that set it; every run of the two-step tick, deadlocking or
     not, has a run of the one-step tick with the same steps of every
     other process. It halves the largest search (3 CPUs, NAP: 1.8 million
     states, 29 s, to 0.85 million, 14 s). */
  :: atomic { !masked[c] && !in_handler[c] && !line[c] -> clock[c] = 0 }
#else
  :: atomic { !masked[c] && !in_handler[c] && !line[c] -> in_handler[c] = 1; clock[c] = 0;
#ifdef CENSUS
       census_judge(c)
#endif
     };
#ifdef POLL
     if
     :: atomic { mailbox[c] -> printf("MSC: tick on CPU %d polls its mailbox\n", c) };
        drain(c)
     :: atomic { !mailbox[c] -> skip }
     fi;
#endif
     in_handler[c] = 0
#endif
  od
}

proctype cpu(byte me) {
  byte t = (me + 1) % NCPU;
  byte i;
  byte n = 0;
  bool was_empty;
#ifdef LOCK
  do
  :: atomic { lock == 0 -> lock = me + 1; break }
  :: atomic { lock != 0 && mailbox[me] ->
       mailbox[me] = 0; printf("MSC: CPU %d drains while waiting for the lock\n", me) };
     run_queue(me)
  od;
#endif
#ifdef MASKED
  masked[me] = 1;
#endif
  /* Queue the call; interrupt only if the queue was empty. */
  atomic { was_empty = (queued[t] == 0); queued[t] = queued[t] | (1 << me) };
  if
  :: was_empty ->
#ifdef CENSUS
     /* Numbered before the bit is posted, counted as issued after. */
     atomic { req[t]++; n = req[t] };
#endif
     mailbox[t] = 1; wripir(t, n);
#ifdef CENSUS
     sent[t]++
#else
     skip
#endif
  :: else -> skip
  fi;
  /* Wait for the call to run. */
#ifdef NAP
  do
  :: atomic { done[me] -> break }
#ifdef ADAPTIVE
  :: atomic { !done[me] -> skip }       /* spin this iteration, at IPL 0 */
#endif
  :: atomic { !done[me] -> masked[me] = 1 };
     napping[me] = 1;                  /* then the SeqCst fence */
     if
     :: atomic { done[me] -> skip }     /* the re-check after the fence */
     :: atomic { !done[me] -> printf("MSC: CPU %d naps\n", me) };
#ifdef NOTICK
        line[me]                       /* only a pending IPI ends it */
#else
        if
        :: line[me] -> skip            /* an IPI is pending */
        :: clock[me] = 1               /* the clock's interrupt is pending */
        fi
#endif
     fi;
     atomic {
       napping[me] = 0;
#ifndef MASKED
       masked[me] = 0
#endif
     };
#ifndef MASKED
     /* Lowering the IPL takes a pending interrupt at once, before the
        waiter goes on (without this the model could re-mask for ever
        first and never take it). */
     (!line[me] && !clock[me]);
#endif
  od;
  masked[me] = 0;
#else
#ifdef RECOVER
  if
  :: atomic { done[me] -> masked[me] = 0 }
  :: atomic { !done[me] -> masked[me] = 0; printf("MSC: CPU %d gives up its wait\n", me) }
  fi;
#else
  atomic { done[me] -> masked[me] = 0 };
#endif
#endif
#ifdef LOCK
  lock = 0;
#endif
  finished++;
  /* Then idle: this CPU's interrupts keep being taken. */
#ifdef IDLENAP
  /* ... between naps at IPL 7, as the kernel's idle loop sleeps. */
  do
  :: masked[me] = 1;
     if
     :: line[me] -> skip
     :: clock[me] = 1
     fi;
     masked[me] = 0;
     (!line[me] && !clock[me])
  od
#endif
}

#ifdef RECOVER
/* The recovery: once every program returned, each CPU in turn takes its
   mailbox bit and runs its whole queue with IPIs held off (one atomic
   step, as the kernel's quiesce runs at the IPI level on that CPU). */
proctype recovery() {
  byte c, i, before, after;
  finished == NCPU;
  c = 0;
  do
  :: c < NCPU ->
     atomic {
       mailbox[c] = 0;
       before = 0; i = 0;
       do :: i < NCPU -> before = before + runs[i]; i++ :: else -> break od;
       run_queue(c);
       after = 0; i = 0;
       do :: i < NCPU -> after = after + runs[i]; i++ :: else -> break od;
#ifdef RWITNESS
       assert(after == before)
#else
       skip
#endif
     };
     c++
  :: else -> break
  od;
  i = 0;
  do
  :: i < NCPU ->
     assert(!mailbox[i] && queued[i] == 0 && runs[i] == 1);
     i++
  :: else -> break
  od
}
#endif

init {
  byte c;
  atomic {
    c = 0;
    do
    :: c < NCPU -> run interrupts(c); run cpu(c); c++
    :: else -> break
    od;
#ifdef RECOVER
    run recovery()
#endif
  }
}

#if !defined(CENSUS) && !defined(RECOVER)
ltl finish { <> (finished == NCPU) }
#endif
