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
//   node fwd_pg.js PGDIR version      prints "Node VERSION PROGRAM, package
//                                     nodejs DEBIAN-VERSION" (or "not from
//                                     the Debian package nodejs"): which
//                                     Node runs the client, for the log
// PGDIR is the pg package's directory (tools/npm-modules).
'use strict';
const fs = require('fs');
const os = require('os');
const [pgdir, mode, port] = process.argv.slice(2);

// The Debian package nodejs's version when it installed this program, read
// from dpkg's own files as this Node sees them (in a chroot, the chroot's).
function debianPackage() {
	const exe = process.execPath;
	let real = exe;
	try {
		real = fs.realpathSync(exe);
		const list = fs.readFileSync('/var/lib/dpkg/info/nodejs.list', 'utf8').split('\n');
		if (!list.includes(exe) && !list.includes(real))
			return 'not from the Debian package nodejs';
		const para = fs.readFileSync('/var/lib/dpkg/status', 'utf8').split('\n\n')
			.find((p) => /^Package: nodejs$/m.test(p));
		const v = para && para.match(/^Version: (.*)$/m);
		return v ? `package nodejs ${v[1]}` : 'package nodejs, version unknown';
	} catch (e) {
		return `not from the Debian package nodejs (${e.code || e.message})`;
	}
}

async function main() {
	if (mode === 'version') {
		console.log(`Node ${process.version} ${process.execPath}, ${debianPackage()}`);
		return;
	}
	const { Client } = require(pgdir);
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
