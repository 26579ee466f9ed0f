"""Redis's work per token submission, with Redis alone on the machine.

Each version's commands for one submission, as its gateway sends them (its
scripts with their arguments, and its plain commands), are replayed over one
pipelined connection against the same prepared state, alternating the two
versions round by round. It compares the build before the outbox (806b32e,
three scripts and one ZREM) with the outbox's (two scripts, the relay mark and
the relay field's HDEL); BENCHMARKS.md has the figures. It needs redis-py
(`pip install redis`) and redis-server on PATH.

usage: python3 benches/replay_submission.py BEFORE/src/store/scripts \
           AFTER/src/store/scripts [submissions] [rounds]
"""
import sys, time, subprocess, os, redis
N = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 5
CUSTOMERS = 64
def load(d):
    def part(n): return open(os.path.join(d, n + '.lua')).read() + '\n'
    def script(*parts): return "local PUBLISH = 'PUBLISH'\n" + ''.join(part(p) for p in parts)
    new = 'relay:' in open(os.path.join(d, 'access.lua')).read()
    pre = ['clock', 'stream_ids', 'access'] if new else ['clock', 'access']
    feed_pre = (['stream_ids'] if 'now_ms' not in open(os.path.join(d, 'feed_add.lua')).read() else ['clock', 'stream_ids'])
    return dict(new=new, submit=script(*pre, 'submit_token'), feed=script(*feed_pre, 'feed_add'),
                index=script('index_remove'), feed_now='now_ms' not in open(os.path.join(d, 'feed_add.lua')).read())
def run(v, port):
    p = subprocess.Popen(['redis-server', '--port', str(port), '--save', '', '--appendonly', 'no'], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    r = redis.Redis(port=port, decode_responses=True)
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
    pipe.execute()
    r.config_resetstat()
    cpu0 = r.info('cpu')
    pipe = r.pipeline(transaction=False)
    for i in range(N):
        a = f'a{i}'; h = f'2fa:access:{{{a}}}'; c = f'c{i % CUSTOMERS}'
        ck = [f'2fa:customer:{{{c}}}:events', f'2fa:customer:{{{c}}}:latest']
        entry = ['status', a, 'token_received', 1, now, f'{now + 5}-{i}']
        if v['new']:
            mark = f'{a}|{now}-{i:016x}'
            pipe.zadd('2fa:relay', {mark: now + 1000})
            pipe.evalsha(sub, 4, h, h + ':wake', h + ':events', h + ':submitted', h + ':changed', '123456', '', '', '10', '60000')
            pipe.evalsha(feed, 3, *ck, f'2fa:customer:{{{c}}}:pending', f'2fa:customer:{{{c}}}:changed', 1000,
                         (now - 86400000) if v['feed_now'] else 86400000, 172800000, a, now, *entry)
            pipe.hdel(h, f'relay:{now}-{i}')
            pipe.zrem('2fa:relay', mark)
        else:
            pipe.evalsha(sub, 4, h, h + ':wake', h + ':events', h + ':submissions', h + ':changed', '123456', '', '', '10', '60000')
            pipe.evalsha(feed, 2, *ck, f'2fa:customer:{{{c}}}:changed', 1000, 86400000, 172800000, *entry)
            pipe.evalsha(idx, 1, f'2fa:customer:{{{c}}}:pending', a, now)
        pipe.zrem('2fa:expiring', f'{a}|{now}')
        if len(pipe) > 600:
            pipe.execute(); pipe = r.pipeline(transaction=False)
    pipe.execute()
    cpu1 = r.info('cpu')
    st = r.info('commandstats')
    # A script's time includes its calls'. The plain commands sent are ZADD,
    # ZREM and HDEL; of the ZREMs, one per submission is a script's own (the
    # pending index's), so only the rest count here.
    def usec(k): return st.get(k, {'usec': 0})['usec']
    zrem = st['cmdstat_zrem']
    top = (usec('cmdstat_evalsha') + usec('cmdstat_zadd') + usec('cmdstat_hdel')
           + zrem['usec'] * (zrem['calls'] - N) / zrem['calls'])
    cpu = (cpu1['used_cpu_user'] + cpu1['used_cpu_sys'] - cpu0['used_cpu_user'] - cpu0['used_cpu_sys']) * 1e6 / N
    calls = sum(s['calls'] for k, s in st.items() if k not in ('cmdstat_info', 'cmdstat_config|resetstat'))
    r.shutdown(nosave=True)
    return top / N, cpu, calls / N
b, a = load(sys.argv[1]), load(sys.argv[2])
for k in range(ROUNDS):
    for name, v in (('before', b), ('after', a)):
        us, cpu, calls = run(v, 7420)
        print(f'round {k+1} {name:6s} commandstats µs/submission {us:6.1f}  Redis CPU µs/submission {cpu:6.1f}  commands {calls:5.1f}', flush=True)
