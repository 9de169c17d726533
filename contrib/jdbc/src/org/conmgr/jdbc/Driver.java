/*
 * Driver.java
 *	  A java.sql.Driver that connects through conmgr, then with pgJDBC.
 *
 *	  jdbc:conmgr://localhost:27546/app?targetServerType=primary
 *
 *	  The URL is pgJDBC's, with "jdbc:conmgr:" for "jdbc:postgresql:" (both
 *	  are accepted; see docs/drivers.md).  Each host of the URL is tried in
 *	  order.  Loopback hosts, and those PGCMADDRS names, are probed
 *	  (Trust.java); one that answers as conmgr (on loopback: run by a
 *	  trusted user) is asked (RESOLVE) for the instances that fit
 *	  targetServerType; pgJDBC connects to them in conmgr's order, the
 *	  first that works is reported to conmgr (ATTACHED) and conmgr's socket
 *	  stays open: on its down-notice, or when it closes, the connection is
 *	  aborted.  Consecutive hosts that are PostgreSQL
 *	  servers are handed to pgJDBC together, untouched.
 */
package org.conmgr.jdbc;

import java.io.IOException;
import java.net.UnknownHostException;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.DriverPropertyInfo;
import java.sql.SQLException;
import java.sql.SQLFeatureNotSupportedException;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Logger;

import org.postgresql.PGConnection;

public final class Driver implements java.sql.Driver
{
	public static final String PREFIX = "jdbc:conmgr:";
	private static final String PG_PREFIX = "jdbc:postgresql:";
	private static final int MAX_KNOWN = 64;
	/* Options that choose among hosts: meaningless for one instance conmgr chose. */
	private static final String[] HOST_CHOICE = { "targetServerType", "loadBalanceHosts", "hostRecheckSeconds" };

	/* host:port found to be a PostgreSQL server, in this JVM. */
	private static final Set<String> POSTMASTERS = ConcurrentHashMap.newKeySet();

	static
	{
		try
		{
			/* Before pgJDBC is touched, so that DriverManager asks us first. */
			DriverManager.registerDriver(new Driver());
		}
		catch (SQLException e)
		{
			throw new ExceptionInInitializerError(e);
		}
	}

	/* pgJDBC, loaded only when first needed. */
	private static final class Pg
	{
		static final org.postgresql.Driver DRIVER = new org.postgresql.Driver();
	}

	/* targetServerType, pgJDBC's spellings, as conmgr targets (docs/protocol.md 2.2). */
	enum Target
	{
		ANY(0), PRIMARY(3), STANDBY(4), PREFER_STANDBY(5), PREFER_PRIMARY(-1);

		final int code;

		Target(int code)
		{
			this.code = code;
		}

		static Target of(String v) throws SQLException
		{
			switch (v)
			{
				case "any":
					return ANY;
				case "primary":
				case "master":
					return PRIMARY;
				case "secondary":
				case "slave":
				case "standby":
					return STANDBY;
				case "preferSecondary":
				case "preferSlave":
					return PREFER_STANDBY;
				case "preferPrimary":
					return PREFER_PRIMARY;
				default:
					throw new SQLException("conmgr: invalid targetServerType \"" + v
										   + "\" (any, primary, master, secondary, slave, standby, "
										   + "preferSecondary, preferSlave)", "08001");
			}
		}

		/* Why a fresh connection does not fit (its role changed since conmgr heard), or null. */
		String mismatch(Connection c) throws SQLException
		{
			String hs = c.unwrap(PGConnection.class).getParameterStatus("in_hot_standby");

			if (hs == null)
				return null;		/* before PostgreSQL 14: conmgr's word only */
			if (this == PRIMARY && hs.equals("on"))
				return "it is in recovery now";
			if (this == STANDBY && hs.equals("off"))
				return "it is not in recovery now";
			return null;
		}
	}

	@Override
	public boolean acceptsURL(String url)
	{
		return url != null && (url.startsWith(PREFIX) || url.startsWith(PG_PREFIX));
	}

	@Override
	public Connection connect(String url, Properties info) throws SQLException
	{
		if (!acceptsURL(url))
			return null;
		String pgUrl = url.startsWith(PREFIX) ? PG_PREFIX + url.substring(PREFIX.length()) : url;
		Properties props = org.postgresql.Driver.parseURL(pgUrl, info);

		if (props == null)
			throw new SQLException("conmgr: invalid URL: " + url, "08001");
		Attempt a;

		try
		{
			a = new Attempt(props);
		}
		catch (NumberFormatException e)
		{
			throw new SQLException("conmgr: invalid number in URL or properties: " + e.getMessage(), "08001");
		}
		return a.run();
	}

	/* One connect call: the URL's hosts in order, and what failed. */
	private static final class Attempt
	{
		private final Properties props;
		private final String[] hosts;
		private final int[] ports;
		private final String tst;
		private final Target target;
		private final long timeoutNanos;
		private final List<String> failures = new ArrayList<>();

		Attempt(Properties props) throws SQLException
		{
			this.props = props;
			hosts = props.getProperty("PGHOST", "localhost").split(",");
			String[] p = props.getProperty("PGPORT", "5432").split(",");

			if (p.length != hosts.length)
				throw new SQLException("conmgr: as many ports as hosts are needed", "08001");
			ports = new int[p.length];
			for (int i = 0; i < p.length; i++)
				ports[i] = Integer.parseInt(p[i].isEmpty() ? "5432" : p[i]);
			tst = props.getProperty("targetServerType", "any");
			target = Target.of(tst);
			/* pgJDBC's connectTimeout (seconds, 0 = none) bounds each conmgr's part. */
			int secs = Integer.parseInt(props.getProperty("connectTimeout", "10"));

			timeoutNanos = (secs > 0 ? secs : 3600) * 1_000_000_000L;
		}

		private String where(int i)
		{
			return hosts[i] + ":" + ports[i];
		}

		/* Every address of host is a loopback one; an unknown host is probed, and fails there. */
		private static boolean loopback(String host) throws IOException
		{
			try
			{
				return Trust.loopback(host);
			}
			catch (UnknownHostException e)
			{
				return true;
			}
		}

		private static String bare(String host)
		{
			return host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
		}

		Connection run() throws SQLException
		{
			int i = 0;

			while (i < hosts.length)
			{
				/* A run of PostgreSQL servers, up to the next conmgr. */
				List<Integer> run = new ArrayList<>();
				Wire cm = null;
				int cmIndex = -1;

				while (i < hosts.length && cm == null)
				{
					if (POSTMASTERS.contains(where(i)))
					{
						run.add(i++);
						continue;
					}
					Wire w = null;

					try
					{
						/* off loopback and not named by PGCMADDRS: a server, not probed */
						if (!loopback(bare(hosts[i])) && !Trust.named(hosts[i], ports[i]))
						{
							run.add(i++);
							continue;
						}
						w = Wire.open(bare(hosts[i]), ports[i], System.nanoTime() + timeoutNanos);
						if (w.probe() == Wire.Kind.POSTMASTER)
						{
							w.close();
							if (POSTMASTERS.size() < MAX_KNOWN)
								POSTMASTERS.add(where(i));
							run.add(i++);
							continue;
						}
					}
					catch (IOException e)
					{
						if (w != null)
							w.close();
						if (!run.isEmpty())
							break;		/* try the run first, then this host again */
						failures.add(where(i) + ": " + e.getMessage());
						i++;
						continue;
					}
					if (!run.isEmpty())
					{
						w.close();		/* asked again after the run */
						break;
					}
					cm = w;
					cmIndex = i++;
				}
				if (!run.isEmpty())
				{
					Connection c = direct(run);

					if (c != null)
						return c;
				}
				else if (cm != null)
				{
					Connection c = viaConmgr(cm, cmIndex);

					if (c != null)
						return c;
				}
			}
			throw new SQLException("conmgr: could not connect with targetServerType=" + tst + ": "
								   + String.join("; ", failures), "08001");
		}

		/* PostgreSQL servers: pgJDBC alone, with the application's options. */
		private Connection direct(List<Integer> run)
		{
			StringBuilder u = new StringBuilder(PG_PREFIX + "//");

			for (int k = 0; k < run.size(); k++)
				u.append(k > 0 ? "," : "").append(where(run.get(k)));
			try
			{
				Connection c = Pg.DRIVER.connect(url(u), strip(false));

				if (c != null)
					return c;
				failures.add(u + ": pgJDBC refused the URL");
			}
			catch (SQLException e)
			{
				failures.add(u.substring(PG_PREFIX.length() + 2) + ": " + e.getMessage());
			}
			return null;
		}

		private String url(StringBuilder hostPart)
		{
			String db = props.getProperty("PGDBNAME", "");

			return hostPart + "/" + URLEncoder.encode(db, StandardCharsets.UTF_8);
		}

		/* The application's options without the URL's parts (and, for conmgr's candidates, the host choice). */
		private Properties strip(boolean hostChoice)
		{
			Properties p = new Properties();

			for (String k : props.stringPropertyNames())
				p.setProperty(k, props.getProperty(k));
			p.remove("PGHOST");
			p.remove("PGPORT");
			p.remove("PGDBNAME");
			if (hostChoice)
				for (String k : HOST_CHOICE)
					p.remove(k);
			return p;
		}

		/* conmgr: RESOLVE, connect to the candidates in its order, ATTACHED. */
		private Connection viaConmgr(Wire cm, int i) throws SQLException
		{
			List<Wire.Candidate> cands;

			if (target == Target.PREFER_PRIMARY)
			{
				cm.close();
				throw new SQLException("conmgr: targetServerType=preferPrimary cannot be used through conmgr ("
									   + where(i) + "); use primary, preferSecondary or any", "0A000");
			}
			try
			{
				cands = cm.resolve(target.code, ProcessHandle.current().pid(),
								   props.getProperty("ApplicationName", "PostgreSQL JDBC Driver"));
			}
			catch (IOException e)
			{
				cm.close();
				failures.add("conmgr at " + where(i) + ": " + e.getMessage());
				return null;
			}
			if (cands.isEmpty())
				failures.add("conmgr at " + where(i) + " knows no instance that is up with targetServerType=" + tst);
			Properties p = strip(true);

			for (Wire.Candidate c : cands)
			{
				String host = c.host.indexOf(':') >= 0 ? "[" + c.host + "]" : c.host;
				Connection real;

				try
				{
					real = Pg.DRIVER.connect(url(new StringBuilder(PG_PREFIX + "//" + host + ":" + c.port)), p);
					if (real == null)
						throw new SQLException("pgJDBC refused the URL");
					String why = target.mismatch(real);

					if (why != null)
					{
						real.close();
						failures.add(c + " (from conmgr at " + where(i) + "): " + why);
						continue;
					}
				}
				catch (SQLException e)
				{
					failures.add(c + " (from conmgr at " + where(i) + "): " + e.getMessage());
					continue;
				}
				try
				{
					cm.attached(c.instance, real.unwrap(PGConnection.class).getBackendPID());
					cm.channel().configureBlocking(false);
					Session s = new Session(cm, real, c, hosts[i], ports[i]);

					Watcher.get().watch(s);
					return s.proxy();
				}
				catch (IOException e)
				{
					real.close();
					failures.add("conmgr at " + where(i) + " lost after connecting to " + c + ": " + e.getMessage());
					break;
				}
			}
			cm.close();
			return null;
		}
	}

	@Override
	public DriverPropertyInfo[] getPropertyInfo(String url, Properties info)
	{
		String pgUrl = url != null && url.startsWith(PREFIX) ? PG_PREFIX + url.substring(PREFIX.length()) : url;

		return Pg.DRIVER.getPropertyInfo(pgUrl, info);
	}

	@Override
	public int getMajorVersion()
	{
		return 1;
	}

	@Override
	public int getMinorVersion()
	{
		return 0;
	}

	@Override
	public boolean jdbcCompliant()
	{
		return false;
	}

	@Override
	public Logger getParentLogger() throws SQLFeatureNotSupportedException
	{
		throw new SQLFeatureNotSupportedException("conmgr: no logger");
	}
}
