/*
 * FwdJdbc: Debian's pgJDBC, as it is, through a conmgr forward port
 * (regress/t/087_forward_stock_clients.t, regress/root/071_forward_blackhole.t).
 * Only pgJDBC is on the class path: no conmgr code takes part.
 *
 *   java FwdJdbc where URL         DriverManager with a jdbc:postgresql: URL
 *   java FwdJdbc ds HOST PORT      PGSimpleDataSource (setServerNames,
 *                                  setPortNumbers)
 *   java FwdJdbc block URL         a statement blocked in pg_sleep(60)
 *   java FwdJdbc dsblock HOST PORT the same through PGSimpleDataSource
 *   java FwdJdbc cancel URL        the same, ended by Statement.cancel()
 *                                  once another connection through the
 *                                  same port sees it run
 *
 * Prints "where port=N recovery=t|f addr=A", or "running" then "result
 * sqlstate=S elapsed=SECONDS message=...".
 */
import java.sql.*;
import org.postgresql.ds.PGSimpleDataSource;

public class FwdJdbc
{
	static final String SLEEP = "SELECT pg_sleep(60)";

	static Connection open(String url) throws SQLException
	{
		java.util.Properties p = new java.util.Properties();

		p.setProperty("user", System.getProperty("user.name"));
		p.setProperty("connectTimeout", "10");
		return DriverManager.getConnection(url, p);
	}

	static void where(Connection c) throws SQLException
	{
		try (Statement st = c.createStatement();
			 ResultSet rs = st.executeQuery(
				 "SELECT inet_server_port(), pg_is_in_recovery(), host(inet_server_addr())"))
		{
			rs.next();
			System.out.println("where port=" + rs.getInt(1) + " recovery=" + (rs.getBoolean(2) ? "t" : "f") +
							   " addr=" + rs.getString(3));
		}
	}

	/* PGSimpleDataSource, as a pool's configuration would set it up. */
	static Connection openDs(String host, String port) throws SQLException
	{
		PGSimpleDataSource ds = new PGSimpleDataSource();

		ds.setServerNames(new String[] {host});
		ds.setPortNumbers(new int[] {Integer.parseInt(port)});
		ds.setDatabaseName("postgres");
		ds.setUser(System.getProperty("user.name"));
		ds.setConnectTimeout(10);
		return ds.getConnection();
	}

	/* Run the sleep on c; print how it ended. */
	static void runBlocked(Connection c, Statement st)
	{
		long t0 = System.nanoTime();
		String state = "none", msg = "";

		System.out.println("running");
		System.out.flush();
		try
		{
			st.execute(SLEEP);
		}
		catch (SQLException e)
		{
			state = e.getSQLState();
			msg = e.getMessage();
		}
		System.out.printf("result sqlstate=%s elapsed=%.3f message=%s%n", state,
						  (System.nanoTime() - t0) / 1e9, msg.replace('\n', ' '));
		System.out.flush();
	}

	public static void main(String[] a) throws Exception
	{
		switch (a[0])
		{
			case "where":
				try (Connection c = open(a[1]))
				{
					where(c);
				}
				break;
			case "ds":
				try (Connection c = openDs(a[1], a[2]))
				{
					where(c);
				}
				break;
			case "block":
				{
					Connection c = open(a[1]);

					runBlocked(c, c.createStatement());
				}
				break;
			case "dsblock":
				{
					Connection c = openDs(a[1], a[2]);

					runBlocked(c, c.createStatement());
				}
				break;
			case "cancel":
				{
					Connection c = open(a[1]);
					Statement st = c.createStatement();
					Thread canceller = new Thread(() -> {
						try (Connection w = open(a[1]);
							 PreparedStatement q = w.prepareStatement(
								 "SELECT count(*) FROM pg_stat_activity WHERE query = ?"))
						{
							q.setString(1, SLEEP);
							for (int i = 0; i < 1000; i++)
							{
								try (ResultSet rs = q.executeQuery())
								{
									rs.next();
									if (rs.getInt(1) > 0)
										break;
								}
								Thread.sleep(10);
							}
							System.out.println("cancel");
							System.out.flush();
							st.cancel();
						}
						catch (Exception e)
						{
							System.out.println("canceller " + e);
						}
					});

					canceller.start();
					runBlocked(c, st);
					canceller.join();
				}
				break;
			default:
				throw new IllegalArgumentException("unknown mode " + a[0]);
		}
	}
}
