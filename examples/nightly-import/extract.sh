#!/bin/sh
# The extract step of the example recipe: writes the leads the next step loads.
set -eu
mkdir -p data
{
    echo "id,name,email"
    i=1
    while [ "$i" -le 2000 ]; do
        echo "$i,Lead $i,lead$i@example.com"
        i=$((i + 1))
    done
} > data/leads.csv.tmp
mv data/leads.csv.tmp data/leads.csv
echo "extracted 2000 leads"
