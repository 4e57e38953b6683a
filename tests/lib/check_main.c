/* check_main.c - main() for every Check unit test: runs the suites the test lists. */
#include <stdlib.h>

#include "check_main.h"

int main(void)
{
	SRunner *sr;
	size_t i;
	int failed;

	if (payq_test_suites[0] == NULL)
		return EXIT_FAILURE; /* a test without suites checks nothing */
	sr = srunner_create(payq_test_suites[0]());
	for (i = 1; payq_test_suites[i] != NULL; i++)
		srunner_add_suite(sr, payq_test_suites[i]());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
