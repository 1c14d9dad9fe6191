from gdrdd.report.run import main

main()
