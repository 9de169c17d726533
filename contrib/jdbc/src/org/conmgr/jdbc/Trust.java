/*
 * Trust.java
 *	  Which hosts may be conmgr, and whether the conmgr reached is run by a
 *	  trusted user: libpq-cm's rules (libpq-cm/trust.c, docs/libpq-cm.md
 *	  "Which conmgr is trusted"), with the same environment variables.
 *
 *	  Only loopback hosts are probed (every address 127.0.0.0/8 or ::1),
 *	  and those PGCMADDRS names.  On loopback, the server's end of the
 *	  connection is found in /proc/net/tcp or tcp6 (this network
 *	  namespace's sockets, with the uid that created each) and must belong
 *	  to root, to this process's user or to PGCMOWNER (a user name, a uid,
 *	  or a path whose owner is meant; by default the user "conmgr").
 */
package org.conmgr.jdbc;

import java.io.IOException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Locale;

final class Trust
{
	private static final String ADDRS_ENV = "PGCMADDRS";
	private static final String OWNER_ENV = "PGCMOWNER";
	private static final String OWNER_DEFAULT = "conmgr";
	private static final String ESTABLISHED = "01";

	private Trust()
	{
	}

	/* Every address of host is a loopback address. */
	static boolean loopback(String host) throws IOException
	{
		InetAddress[] all = InetAddress.getAllByName(host);

		for (InetAddress a : all)
			if (!a.isLoopbackAddress())
				return false;
		return all.length > 0;
	}

	/*
	 * Does PGCMADDRS name host:port?  Entries HOST, HOST:PORT, [IPV6],
	 * [IPV6]:PORT, comma-separated; HOST compared without case with the
	 * host as the URL gives it.  A malformed entry is an IOException.
	 */
	static boolean named(String host, int port) throws IOException
	{
		String list = System.getenv(ADDRS_ENV);

		if (list == null || list.isEmpty())
			return false;
		String bare = host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;

		for (String raw : list.split(","))
		{
			String e = raw.strip();
			String h = e;
			String p = null;

			if (e.startsWith("["))
			{
				int close = e.indexOf(']');

				if (close < 0 || (close + 1 < e.length() && e.charAt(close + 1) != ':'))
					throw bad(raw);
				h = e.substring(1, close);
				if (close + 1 < e.length())
					p = e.substring(close + 2);
			}
			else if (e.indexOf(':') >= 0 && e.indexOf(':') == e.lastIndexOf(':'))
			{
				h = e.substring(0, e.indexOf(':'));
				p = e.substring(e.indexOf(':') + 1);
			}
			if (!Wire.validHost(h, 0))
				throw bad(raw);
			if (p != null)
			{
				int n;

				try
				{
					n = p.matches("[0-9]{1,5}") ? Integer.parseInt(p) : -1;
				}
				catch (NumberFormatException x)
				{
					n = -1;
				}
				if (n < 1 || n > 65535)
					throw bad(raw);
				if (n != port)
					continue;
			}
			if (h.equalsIgnoreCase(bare))
				return true;
		}
		return false;
	}

	private static IOException bad(String entry)
	{
		String shown = entry.length() > 100 ? entry.substring(0, 100) : entry;

		return new IOException("invalid entry \"" + shown + "\" in " + ADDRS_ENV
							   + ": HOST, HOST:PORT, [IPV6] or [IPV6]:PORT expected");
	}

	/* The address as /proc/net/tcp{,6} prints it: 32-bit words in host order, hex. */
	private static String procAddr(byte[] a)
	{
		StringBuilder b = new StringBuilder();
		boolean little = ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN;

		for (int w = 0; w < a.length; w += 4)
			for (int k = 0; k < 4; k++)
				b.append(String.format("%02X", a[w + (little ? 3 - k : k)] & 0xff));
		return b.toString();
	}

	private static byte[] mapped(byte[] v4)
	{
		byte[] a = new byte[16];

		a[10] = (byte) 0xff;
		a[11] = (byte) 0xff;
		System.arraycopy(v4, 0, a, 12, 4);
		return a;
	}

	/* The uid of the socket local -> remote in table, or -1. */
	private static long uidIn(String table, String local, String remote) throws IOException
	{
		List<String> lines;

		try
		{
			lines = Files.readAllLines(Paths.get(table));
		}
		catch (NoSuchFileException e)
		{
			return -1;
		}
		for (String line : lines)
		{
			String[] f = line.trim().split("\\s+");

			/* sl local rem st queues timer retrnsmt uid timeout inode */
			if (f.length < 10 || !f[1].equals(local) || !f[2].equals(remote))
				continue;
			if (!f[3].equals(ESTABLISHED) || f[9].equals("0"))
				throw new IOException("could not check who runs the conmgr on this port: it closed the connection");
			return Long.parseLong(f[7]);
		}
		return -1;
	}

	/* This process's effective uid. */
	private static long euid() throws IOException
	{
		for (String line : Files.readAllLines(Paths.get("/proc/self/status")))
			if (line.startsWith("Uid:"))
				return Long.parseLong(line.split("\\s+")[2]);
		throw new IOException("could not read this process's uid from /proc/self/status");
	}

	/* The uid of user name in /etc/passwd, or -1. */
	private static long passwdUid(String name) throws IOException
	{
		for (String line : Files.readAllLines(Paths.get("/etc/passwd")))
		{
			String[] f = line.split(":", -1);

			if (f.length > 2 && f[0].equals(name))
				return Long.parseLong(f[2]);
		}
		return -1;
	}

	/* "user "name" (uid N)", or "uid N" for a uid /etc/passwd does not name. */
	private static String describe(long uid) throws IOException
	{
		for (String line : Files.readAllLines(Paths.get("/etc/passwd")))
		{
			String[] f = line.split(":", -1);

			if (f.length > 2 && f[2].equals(Long.toString(uid)))
				return "user \"" + f[0] + "\" (uid " + uid + ")";
		}
		return "uid " + uid;
	}

	/*
	 * The server end of ch, a connection to a loopback conmgr, must belong
	 * to root, this user or PGCMOWNER's; an IOException says otherwise.
	 */
	static void checkOwner(SocketChannel ch) throws IOException
	{
		InetSocketAddress l = (InetSocketAddress) ch.getLocalAddress();
		InetSocketAddress r = (InetSocketAddress) ch.getRemoteAddress();
		byte[] la = l.getAddress().getAddress();
		byte[] ra = r.getAddress().getAddress();
		String lp = String.format(":%04X", l.getPort());
		String rp = String.format(":%04X", r.getPort());
		long uid = -1;

		if (r.getAddress() instanceof Inet4Address)
		{
			if (la.length == 4)
				uid = uidIn("/proc/net/tcp", procAddr(ra) + rp, procAddr(la) + lp);
			if (uid < 0)
				uid = uidIn("/proc/net/tcp6", procAddr(mapped(ra)) + rp,
							procAddr(la.length == 4 ? mapped(la) : la) + lp);
		}
		else
			uid = uidIn("/proc/net/tcp6", procAddr(ra) + rp, procAddr(la) + lp);
		if (uid < 0)
			throw new IOException("could not check who runs the conmgr on this port: its socket is not in /proc/net/tcp or tcp6");
		long self = euid();

		if (uid == 0 || uid == self)
			return;
		String v = System.getenv(OWNER_ENV);
		boolean dflt = v == null || v.isEmpty();
		long owner;
		String expected;

		if (!dflt && v.matches("[0-9]+"))
		{
			owner = Long.parseLong(v);
			expected = "uid " + owner + " (" + OWNER_ENV + ")";
		}
		else if (!dflt && v.startsWith("/"))
		{
			Path p = Paths.get(v);

			try
			{
				owner = ((Number) Files.getAttribute(p, "unix:uid")).longValue();
			}
			catch (IOException e)
			{
				throw new IOException(OWNER_ENV + " names \"" + v + "\": " + e.getMessage());
			}
			expected = "uid " + owner + ", the owner of " + v + " (" + OWNER_ENV + ")";
		}
		else
		{
			String name = dflt ? OWNER_DEFAULT : v;

			owner = passwdUid(name);
			if (owner < 0 && !dflt)
				throw new IOException(OWNER_ENV + " names user \"" + v + "\", who does not exist");
			expected = owner < 0 ? null : String.format(Locale.ROOT, "user \"%s\" (uid %d, %s)", name, owner,
														 dflt ? "the default of " + OWNER_ENV : OWNER_ENV);
		}
		if (owner >= 0 && uid == owner)
			return;
		throw new IOException("this port is served by " + describe(uid) + ", who is not trusted to run conmgr (trusted: root, this program's uid "
							  + self + (expected != null ? ", " + expected : "") + "); set " + OWNER_ENV
							  + " to the user that runs conmgr");
	}
}
