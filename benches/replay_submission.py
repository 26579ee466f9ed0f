"""Redis's work per token submission, with Redis alone on the machine.

Each version's commands for one submission, as its gateway sends them (its
scripts with their arguments, and its plain commands), are replayed over one
pipelined connection against the same prepared state, alternating the two
versions round by round. It compares the build before the outbox (806b32e:
three scripts and one ZREM) with the outbox's (two functions of its library,
which write the relay mark themselves, then an HDEL of the relay field and
ZREMs of the mark and of the expiring entry); BENCHMARKS.md has the figures. It needs redis-py
(`pip install redis`) and redis-server on PATH.

usage: python3 benches/replay_submission.py BEFORE/src/store/scripts \
           AFTER/src/store/scripts [submissions] [rounds] [customers]

With as many customers as submissions, every feed is new and does its
housekeeping; with fewer (64 by default) the feeds are busy, as in the load
generator.

With REPLAY_CALLGRIND=1 Redis runs under valgrind's callgrind, and each
round also prints the instructions Redis executed per submission: a count
that does not move with the machine's load, unlike the times. It needs
valgrind (`apt-get install valgrind`), and runs about fifty times slower.
"""
import sys, time, subprocess, os, glob, tempfile, redis
N = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 5
CUSTOMERS = int(sys.argv[5]) if len(sys.argv) > 5 else 64
BATCH = 64
def load(d):
    """A version's scripts: the outbox's as functions of one library, called
    with FCALL; the build before it's as scripts, called with EVALSHA."""
    def part(n): return open(os.path.join(d, n + '.lua')).read() + '\n'
    if os.path.exists(os.path.join(d, 'function.lua')):
        library = ("#!lua name=twofa_replay\nlocal KEYS, ARGV\nlocal PUBLISH = 'PUBLISH'\n"
                   + ''.join(part(p) for p in ('clock', 'stream_ids', 'access', 'function'))
                   + ''.join(f"redis.register_function('{n}', function(keys, args)\nbegin(keys, args)\n{part(n)}\nend)\n"
                             for n in ('submit_token', 'feed_add')))
        return dict(new=True, library=library)
    def script(*parts): return "local PUBLISH = 'PUBLISH'\n" + ''.join(part(p) for p in parts)
    return dict(new=False, submit=script('clock', 'access', 'submit_token'),
                feed=script('clock', 'stream_ids', 'feed_add'), index=script('index_remove'))
CALLGRIND = os.environ.get('REPLAY_CALLGRIND') == '1'
def start(port):
    server = ['redis-server', '--port', str(port), '--save', '', '--appendonly', 'no']
    out = tempfile.mkdtemp()
    if CALLGRIND:
        server = ['valgrind', '--tool=callgrind', f'--callgrind-out-file={out}/cg.%p'] + server
    p = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=port, decode_responses=True)
    for _ in range(200):
        try:
            r.ping(); break
        except redis.ConnectionError:
            time.sleep(0.05)
    return p, r, out
def callgrind(p, command):
    if CALLGRIND:
        subprocess.run(['callgrind_control', command, str(p.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def instructions(out):
    """The instructions counted between the zeroing and the first dump."""
    if not CALLGRIND:
        return 0
    dump = sorted(glob.glob(f'{out}/cg.*.1'))[0]
    return next(int(l.split()[1]) for l in open(dump) if l.startswith('summary:'))
def append(v, pipe, feed, c, a, now, entries, unpend=False):
    """A relay to customer c's feed, as each version's gateway sends it."""
    keys = [f'2fa:customer:{{{c}}}:events', f'2fa:customer:{{{c}}}:latest']
    flat = [x for entry in entries for x in entry]
    if v['new']:
        pipe.fcall('feed_add', 3, *keys, f'2fa:customer:{{{c}}}:pending', f'2fa:customer:{{{c}}}:changed', 1000,
                     now, 172800000, a if unpend else '', now if unpend else '', 3600000, 60000, *flat)
    else:
        pipe.evalsha(feed, 2, *keys, f'2fa:customer:{{{c}}}:changed', 1000, 86400000, 172800000, *flat)
def run(v, port):
    p, r, out = start(port)
    if v['new']:
        r.function_load(v['library'])
        sub = feed = idx = None
    else:
        sub = r.script_load(v['submit']); feed = r.script_load(v['feed']); idx = r.script_load(v['index'])
    now = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for i in range(N):
        a = f'a{i}'; h = f'2fa:access:{{{a}}}'; c = f'c{i % CUSTOMERS}'
        pipe.hset(h, mapping=dict(status='question_sent', customer=c, fin_entity_name='Real', question='Enter the code',
            kind='code', attempt='1', started_at=now, updated_at=now, expires_at=now + 300000))
        pipe.pexpire(h, 86400000)
        pipe.xadd(h + ':events', dict(type='challenge', attempt='1', at=now, by='scraper'))
        pipe.xadd(h + ':events', dict(type='question_sent', attempt='1', at=now, by='frontend'))
        pipe.pexpire(h + ':events', 86400000)
        pipe.zadd(f'2fa:customer:{{{c}}}:pending', {a: now})
        pipe.zadd('2fa:expiring', {f'{a}|{now}': now + 300000})
        # The feed as the post's and the list's relays left it, by the
        # version's own feed script.
        append(v, pipe, feed, c, a, now, [['challenge', a, 'need', 1, now, f'{now}-0'],
                                          ['status', a, 'question_sent', 1, now, f'{now}-1']])
    pipe.execute()
    r.config_resetstat()
    cpu0 = r.info('cpu')
    callgrind(p, '-z')
    # In batches of 64 submissions, as many as the load generator has in
    # flight: the steps, then what the gateway sends once it has their
    # replies (the feed, and the relay fields and marks the replies name).
    for first in range(0, N, BATCH):
        batch = range(first, min(N, first + BATCH))
        pipe = r.pipeline(transaction=False)
        for i in batch:
            a = f'a{i}'; h = f'2fa:access:{{{a}}}'
            if v['new']:
                pipe.fcall('submit_token', 5, h, h + ':wake', h + ':events', h + ':submitted', '2fa:relay', h + ':changed',
                             '123456', '', '', '10', '60000')
            else:
                pipe.evalsha(sub, 4, h, h + ':wake', h + ':events', h + ':submissions', h + ':changed',
                             '123456', '', '', '10', '60000')
        replies = pipe.execute()
        pipe = r.pipeline(transaction=False)
        for i, reply in zip(batch, replies):
            a = f'a{i}'; h = f'2fa:access:{{{a}}}'; c = f'c{i % CUSTOMERS}'
            entry = ['status', a, 'token_received', 1, now, f'{now}-2']
            append(v, pipe, feed, c, a, now, [entry], unpend=True)
            if v['new']:
                fields = reply[4 + 6 * int(reply[2]):][::2]
                relays = [f for f in fields if f.startswith('relay:')]
                pipe.hdel(h, *relays)
                pipe.zrem('2fa:relay', *(f'{a}|{f[len("relay:"):]}' for f in relays))
            else:
                pipe.evalsha(idx, 1, f'2fa:customer:{{{c}}}:pending', a, now)
            if v['new']:
                # Watched until the token's TTL ends, rather than dropped.
                pipe.zadd('2fa:expiring', {f'{a}|{now}': now + 600000}, xx=True)
            else:
                pipe.zrem('2fa:expiring', f'{a}|{now}')
        pipe.execute()
    callgrind(p, '-d')
    cpu1 = r.info('cpu')
    st = r.info('commandstats')
    # A script's time includes its calls'. The plain commands sent are ZREM,
    # ZADD and HDEL; of the ZREMs, one per submission is a script's own (the
    # pending index's), so only the rest count here, and of the ZADDs, the
    # relay mark's is the submit function's.
    def usec(k): return st.get(k, {'usec': 0, 'calls': 1})['usec']
    zrem = st['cmdstat_zrem']
    zadd = st.get('cmdstat_zadd', {'usec': 0, 'calls': 1})
    top = (usec('cmdstat_evalsha') + usec('cmdstat_fcall')
           + ((usec('cmdstat_hdel') + zadd['usec'] / 2) if v['new'] else 0)
           + zrem['usec'] * (zrem['calls'] - N) / zrem['calls'])
    cpu = (cpu1['used_cpu_user'] + cpu1['used_cpu_sys'] - cpu0['used_cpu_user'] - cpu0['used_cpu_sys']) * 1e6 / N
    calls = sum(s['calls'] for k, s in st.items() if k not in ('cmdstat_info', 'cmdstat_config|resetstat'))
    r.shutdown(nosave=True)
    p.wait()
    return top / N, cpu, calls / N, instructions(out) / N
b, a = load(sys.argv[1]), load(sys.argv[2])
for k in range(ROUNDS):
    for name, v in (('before', b), ('after', a)):
        us, cpu, calls, ins = run(v, 7420)
        print(f'round {k+1} {name:6s} commandstats µs/submission {us:6.1f}  Redis CPU µs/submission {cpu:6.1f}  '
              f'commands {calls:5.1f}' + (f'  instructions/submission {ins:8.0f}' if CALLGRIND else ''), flush=True)
