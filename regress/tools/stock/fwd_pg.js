// fwd_pg: node-postgres (npm's pg, its own protocol code, no libpq) through
// a conmgr forward port (regress/t/087_forward_stock_clients.t,
// regress/root/071_forward_blackhole.t).
//
//   node fwd_pg.js PGDIR where PORT   prints "where port=N recovery=t|f
//                                     addr=A"
//   node fwd_pg.js PGDIR block PORT   prints "running", then how a statement
//                                     blocked in pg_sleep(60) ended:
//                                     "result sqlstate=S elapsed=SECONDS
//                                     message=..."
// PGDIR is the pg package's directory (tools/npm-modules).
'use strict';
const os = require('os');
const [pgdir, mode, port] = process.argv.slice(2);
const { Client } = require(pgdir);

async function main() {
	const c = new Client({
		host: '127.0.0.1', port: Number(port), database: 'postgres',
		user: os.userInfo().username, connectionTimeoutMillis: 10000,
	});
	// a lost connection also comes as an 'error' event on the client
	c.on('error', () => {});
	await c.connect();
	if (mode === 'where') {
		const r = await c.query('SELECT inet_server_port() AS port, pg_is_in_recovery() AS rec, host(inet_server_addr()) AS addr');
		console.log(`where port=${r.rows[0].port} recovery=${r.rows[0].rec ? 't' : 'f'} addr=${r.rows[0].addr} pg=${require(pgdir + '/package.json').version}`);
		await c.end();
		return;
	}
	console.log('running');
	const t0 = process.hrtime.bigint();
	let state = 'none', msg = '';
	try {
		await c.query('SELECT pg_sleep(60)');
	} catch (e) {
		state = e.code || 'none';
		msg = e.message;
	}
	const s = Number(process.hrtime.bigint() - t0) / 1e9;
	console.log(`result sqlstate=${state} elapsed=${s.toFixed(3)} message=${msg.replace(/\n/g, ' ')}`);
	process.exit(0);
}

main().catch((e) => { console.log(`error ${e.code || ''} ${e.message}`); process.exit(1); });
